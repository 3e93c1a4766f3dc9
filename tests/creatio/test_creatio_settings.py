"""CreatioSettings: normalisation and clear refusals of inconsistent settings."""

from __future__ import annotations

import pytest
from casebridge.secrets import Secret
from casebridge_creatio.settings import CreatioSettings


def test_trailing_slash_and_prefix_are_normalised():
    s = CreatioSettings(
        url="https://acme.creatio.com/", username="u", password=Secret("p"), odata_prefix="/0/"
    )
    assert s.url == "https://acme.creatio.com"
    assert s.odata_root == "https://acme.creatio.com/0/odata"
    net8 = CreatioSettings(
        url="https://a.test", username="u", password=Secret("p"), odata_prefix=""
    )
    assert net8.odata_root == "https://a.test/odata"
    assert net8.case_url("x") == "https://a.test/Shell/#Card/Case_FormPage/edit/x"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"url": ""}, "url"),
        ({"url": "acme.creatio.com"}, "url"),
        ({"url": "https://a.test", "username": "u"}, "username and password"),
        (
            {
                "url": "https://a.test",
                "auth": "oauth",
                "identity_url": "https://i.test",
                "client_secret": Secret("s"),
            },
            "client_id",
        ),
        (
            {"url": "https://a.test", "auth": "oauth", "client_id": "c"},
            "identity_url, client_secret",
        ),
        ({"url": "https://a.test", "auth": "token"}, "auth"),
        ({"url": "sandbox", "owner_id": "Bob"}, "owner_id"),
        ({"url": "sandbox", "origin_ids": {"sms": "SMS"}}, "origin_ids.sms"),
        ({"url": "sandbox", "max_concurrency": 0}, "max_concurrency"),
        ({"url": "sandbox", "marker_column": "Detailed Result"}, "column"),
    ],
)
def test_inconsistent_settings_are_refused_with_the_key(values, message):
    with pytest.raises(ValueError, match=message):
        CreatioSettings(**values)


def test_repr_shows_no_secret():
    s = CreatioSettings(
        url="https://a.test",
        auth="oauth",
        identity_url="https://i.test",
        client_id="c",
        client_secret=Secret("very-secret-1"),
        webhook_token=Secret("very-secret-2"),
    )
    assert "very-secret" not in repr(s) and "very-secret" not in str(s)
