"""$filter over HTTP: operators, functions, literals, navigation, and clean 400s."""

from __future__ import annotations

import httpx
import pytest
from casebridge_creatio.sandbox import seed
from casebridge_creatio.sandbox.query import quote

HOSTILE = "O'Brien' or 1 eq 1 or Subject eq '"


@pytest.fixture
def cases(session: httpx.Client) -> list[dict[str, object]]:
    rows = []
    for subject, status in [("Broken printer", seed.STATUS_NEW),
                            (HOSTILE, seed.STATUS_IN_PROGRESS),
                            ("Refund for order 12", seed.STATUS_CLOSED),
                            ("printer toner", seed.STATUS_RESOLVED)]:
        answer = session.post("/0/odata/Case", json={"Subject": subject, "StatusId": status,
                                                     "ContactId": seed.SUPERVISOR_CONTACT})
        rows.append(answer.json())
    return rows


def subjects(client: httpx.Client, expression: str) -> set[str]:
    answer = client.get("/0/odata/Case", params={"$filter": expression})
    assert answer.status_code == 200, answer.text
    return {row["Subject"] for row in answer.json()["value"]}


def test_hostile_string_value_matches_only_itself(session: httpx.Client,
                                                  cases: list[dict[str, object]]) -> None:
    assert subjects(session, f"Subject eq {quote(HOSTILE)}") == {HOSTILE}
    assert subjects(session, "Subject eq 'O''Brien'") == set()


def test_functions_are_case_insensitive_like_sql_server(session: httpx.Client,
                                                        cases: list[dict[str, object]]) -> None:
    assert subjects(session, "contains(Subject, 'PRINTER')") == {"Broken printer",
                                                                  "printer toner"}
    assert subjects(session, "startswith(Subject, 'refund')") == {"Refund for order 12"}
    assert subjects(session, "endswith(Subject, 'toner')") == {"printer toner"}


def test_navigation_guid_and_boolean(session: httpx.Client,
                                     cases: list[dict[str, object]]) -> None:
    open_ = subjects(session, f"Contact/Id eq {seed.SUPERVISOR_CONTACT} and "
                              "Status/IsFinal eq false")
    assert open_ == {"Broken printer", HOSTILE, "printer toner"}
    either = subjects(session, f"StatusId eq {seed.STATUS_NEW} or StatusId eq "
                               f"{seed.STATUS_CLOSED.upper()}")
    assert either == {"Broken printer", "Refund for order 12"}
    assert subjects(session, "not (Status/IsFinal eq false)") == {"Refund for order 12"}
    assert subjects(session, "OwnerId eq null and ContactId ne null") == {
        "Broken printer", HOSTILE, "Refund for order 12", "printer toner"}


def test_datetimes_compare_unquoted_with_z(session: httpx.Client,
                                           cases: list[dict[str, object]]) -> None:
    assert len(subjects(session, "CreatedOn gt 2000-01-01T00:00:00Z")) == 4
    assert subjects(session, "CreatedOn lt 2000-01-01T00:00:00.5Z") == set()
    assert len(subjects(session, f"CreatedOn ge {cases[0]['CreatedOn']}")) == 4


@pytest.mark.parametrize("expression", [
    f"StatusId eq guid'{seed.STATUS_NEW}'",
    f"StatusId eq '{seed.STATUS_NEW}'",
    "Subject eq 'unterminated",
    "Nope eq 1",
    "Subject eq",
    "(Subject eq 'a'",
    "Subject in ('a', 'b')",
    "Status/Nope eq 1",
    "Subject",
    "Subject gt true",
    "frobnicate(Subject)",
    "CreatedOn gt 2024-13-45T00:00:00Z",
    "%%%",
])
def test_bad_filters_are_400_with_an_odata_error(session: httpx.Client, expression: str) -> None:
    answer = session.get("/0/odata/Case", params={"$filter": expression})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] and error["message"]
    assert error["innererror"]["internalexception"]["message"]
