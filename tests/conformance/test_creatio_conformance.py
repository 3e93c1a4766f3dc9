"""The Creatio plugin passes the CRM conformance suite against its in-process sandbox,
which a rep drives the way Creatio's own UI would: OData writes, then the business process
calls the bridge."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from casebridge.model import WebhookRequest
from casebridge.testing import CrmConformance, CrmUnderTest, Harness
from casebridge_creatio.sandbox import seed

TOKEN = "creatio-conformance-token"


class CreatioProbe:
    def __init__(self, harness: Harness) -> None:
        plugin = harness.bridge.pm.get_plugin("creatio")
        self.sandbox, self.url = plugin.sandbox, plugin.sandbox_url
        # The sandbox may hold demo records: the suite counts only what comes after.
        self.before = {row["Id"] for row in self.sandbox.store.rows("Case")}

    async def case_ids(self) -> list[str]:
        return [r["Id"] for r in self.sandbox.store.rows("Case") if r["Id"] not in self.before]

    async def activity_ids(self, case_id: str) -> list[str]:
        return [r["Id"] for r in self.sandbox.store.rows("Activity")
                if str(r.get("CaseId") or "").lower() == case_id.lower()]

    @asynccontextmanager
    async def _rep(self) -> AsyncIterator[httpx.AsyncClient]:
        """An OData client signed in as a rep (session cookies and BPMCSRF)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=10) as client:
            answer = await client.post("/ServiceModel/AuthService.svc/Login",
                                       json={"UserName": "Supervisor",
                                             "UserPassword": "Supervisor"})
            assert answer.json()["Code"] == 0, answer.text
            client.headers["BPMCSRF"] = client.cookies["BPMCSRF"]
            yield client

    async def reply_webhook(self, case_id: str, text: str) -> WebhookRequest:
        async with self._rep() as rep:
            now = "2030-01-01T10:00:00Z"
            answer = await rep.post("/0/odata/Activity", json={
                "Title": "Re: your case", "CaseId": case_id, "Body": text,
                "TypeId": seed.ACTIVITY_TYPE_EMAIL, "MessageTypeId": seed.MESSAGE_OUTGOING,
                "StatusId": seed.ACTIVITY_STATUS_COMPLETED, "StartDate": now, "DueDate": now,
            })
            assert answer.status_code == 201, answer.text
            activity_id = answer.json()["Id"]
        body = {"event_type": "new_activity", "caseId": case_id, "activityId": activity_id}
        return WebhookRequest(TOKEN, {"content-type": "application/json"},
                              json.dumps(body).encode())

    async def closed_webhook(self, case_id: str) -> WebhookRequest:
        async with self._rep() as rep:
            answer = await rep.patch(f"/0/odata/Case({case_id})",
                                     json={"StatusId": seed.STATUS_CLOSED})
            assert answer.status_code == 204, answer.text
        body = {"event_type": "case_closed", "caseId": case_id}
        return WebhookRequest(TOKEN, {"content-type": "application/json"},
                              json.dumps(body).encode())

    def forged_webhook(self, request: WebhookRequest) -> WebhookRequest:
        return WebhookRequest("forged-" + TOKEN, request.headers, request.body)


class TestCreatioConformance(CrmConformance):
    pass


@pytest.fixture
def crm_under_test(tmp_path: Path) -> CrmUnderTest:
    return CrmUnderTest("creatio", {"url": "sandbox", "webhook_token": TOKEN,
                                    "reconcile_interval": 0},
                        CreatioProbe)
