"""Bodies nested deeper than any Creatio request are a 400 naming the problem, on every
sandbox route that reads JSON: OData inserts and updates, $batch and the login."""

from __future__ import annotations

import uuid

import httpx
from conftest import RunningSandbox

DEEP = b"[" * 100_000


def test_odata_and_batch_refuse_deep_nesting_with_400(session: httpx.Client) -> None:
    headers = {"Content-Type": "application/json"}
    for method, path in [
        ("POST", "/0/odata/Case"),
        ("PATCH", f"/0/odata/Case({uuid.uuid4()})"),
        ("POST", "/0/odata/$batch"),
    ]:
        answer = session.request(method, path, content=DEEP, headers=headers)
        assert answer.status_code == 400, (path, answer.status_code, answer.text)
        assert "nested deeper than 64 levels" in answer.json()["error"]["message"], path
    # The sandbox still answers normally.
    assert session.get("/0/odata/CaseStatus").status_code == 200


def test_login_refuses_deep_nesting_with_400(sandbox: RunningSandbox) -> None:
    with sandbox.client() as client:
        answer = client.post(
            "/ServiceModel/AuthService.svc/Login",
            content=DEEP,
            headers={"Content-Type": "application/json"},
        )
    assert answer.status_code == 400, answer.text
