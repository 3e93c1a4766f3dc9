"""Atomicity groups all-or-nothing in every position, and the switches that make the sandbox
a server without client-chosen ids or atomicity groups."""

from __future__ import annotations

import uuid

import httpx
from test_batch import activity_request, case_request, count


def faults(session: httpx.Client, **values: object) -> None:
    session.post("/sandbox/admin/faults", json=values).raise_for_status()


def test_a_failing_group_without_continue_on_error_stops_and_rolls_back(
    session: httpx.Client,
) -> None:
    before, lost, after = (str(uuid.uuid4()) for _ in range(3))
    answer = session.post(
        "/0/odata/$batch",
        json={
            "requests": [
                case_request("1", before),
                case_request("2", lost, atomicityGroup="g"),
                activity_request("3", lost, atomicityGroup="g"),
                # A duplicate key: what a retried write of an existing record meets.
                case_request("4", before, atomicityGroup="g"),
                activity_request("5", lost, atomicityGroup="g"),
                case_request("6", after),
            ]
        },
    )
    statuses = [r["status"] for r in answer.json()["responses"]]
    assert statuses == [201, 424, 424, 500]
    assert count(session, "Case", f"Id eq {before}") == 1
    assert count(session, "Case", f"Id eq {lost} or Id eq {after}") == 0
    assert count(session, "Activity", f"CaseId eq {lost}") == 0


def test_a_failed_group_leaves_the_next_group_alone(session: httpx.Client) -> None:
    lost, kept = str(uuid.uuid4()), str(uuid.uuid4())
    answer = session.post(
        "/0/odata/$batch",
        headers={"Prefer": "continue-on-error"},
        json={
            "requests": [
                case_request("1", lost, atomicityGroup="a"),
                {
                    "id": "2",
                    "method": "POST",
                    "url": "Activity",
                    # Title is required and has no default: Creatio refuses it (400).
                    "body": {"Body": "no title", "CaseId": lost},
                    "atomicityGroup": "a",
                },
                case_request("3", kept, atomicityGroup="b"),
                activity_request("4", kept, atomicityGroup="b"),
            ]
        },
    )
    assert [r["status"] for r in answer.json()["responses"]] == [424, 400, 201, 201]
    assert count(session, "Case", f"Id eq {lost}") == 0
    assert count(session, "Activity", f"CaseId eq {kept}") == 1


def test_a_whole_group_succeeding_keeps_every_record(session: httpx.Client) -> None:
    case_id = str(uuid.uuid4())
    answer = session.post(
        "/0/odata/$batch",
        json={
            "requests": [
                case_request("1", case_id, atomicityGroup="g"),
                *(activity_request(str(i), case_id, atomicityGroup="g") for i in range(2, 12)),
            ]
        },
    )
    assert {r["status"] for r in answer.json()["responses"]} == {201}
    assert count(session, "Activity", f"CaseId eq {case_id}") == 10


def test_refuse_atomicity_groups_answers_400_and_writes_nothing(session: httpx.Client) -> None:
    faults(session, refuse_atomicity_groups=True)
    case_id = str(uuid.uuid4())
    refused = session.post(
        "/0/odata/$batch", json={"requests": [case_request("1", case_id, atomicityGroup="g")]}
    )
    assert refused.status_code == 400
    assert "atomicityGroup" in refused.json()["error"]["message"]
    assert count(session, "Case", f"Id eq {case_id}") == 0
    plain = session.post("/0/odata/$batch", json={"requests": [case_request("1", case_id)]})
    assert plain.json()["responses"][0]["status"] == 201


def test_ignore_client_ids_gives_records_ids_of_their_own(session: httpx.Client) -> None:
    faults(session, ignore_client_ids=True)
    direct, batched = str(uuid.uuid4()), str(uuid.uuid4())
    created = session.post("/0/odata/Case", json={"Id": direct, "Subject": "direct"})
    assert created.status_code == 201
    assert created.json()["Id"] != direct
    answer = session.post(
        "/0/odata/$batch",
        json={
            "requests": [
                case_request("1", batched, atomicityGroup="g"),
                activity_request("2", batched, atomicityGroup="g"),
            ]
        },
    )
    # The activity names a case that does not exist under that Id (a foreign-key
    # violation, 500 as Creatio answers it): the group fails.
    assert [r["status"] for r in answer.json()["responses"]] == [424, 500]
    assert count(session, "Case", f"Id eq {direct} or Id eq {batched}") == 0
    assert count(session, "Case", "Subject eq 'direct'") == 1
