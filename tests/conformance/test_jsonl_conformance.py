"""The example JSON-lines CRM passes the CRM conformance suite, installed by its entry
point exactly as a third-party plugin is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from casebridge.model import WebhookRequest
from casebridge.testing import CrmConformance, CrmUnderTest, Harness
from support.bridges import install_jsonl

TOKEN = "jsonl-conformance-token"


class JsonlProbe:
    def __init__(self, harness: Harness) -> None:
        self.path = harness.bridge.data_dir / "cases.jsonl"

    def _records(self, kind: str) -> list[dict]:
        if not self.path.exists():
            return []
        lines = self.path.read_text().splitlines()
        return [r for r in map(json.loads, filter(None, lines)) if r["type"] == kind]

    async def case_ids(self) -> list[str]:
        return [r["id"] for r in self._records("case")]

    async def activity_ids(self, case_id: str) -> list[str]:
        return [r["id"] for r in self._records("activity") if r["case_id"] == case_id]

    async def reply_webhook(self, case_id: str, text: str) -> WebhookRequest:
        body = {"event_type": "new_activity", "caseId": case_id, "activityId": f"rep-{case_id}",
                "text": text, "author": "Rita Rep"}
        return WebhookRequest(TOKEN, {"content-type": "application/json"},
                              json.dumps(body).encode())

    async def closed_webhook(self, case_id: str) -> WebhookRequest:
        body = {"event_type": "case_closed", "caseId": case_id}
        return WebhookRequest(TOKEN, {"content-type": "application/json"},
                              json.dumps(body).encode())

    def forged_webhook(self, request: WebhookRequest) -> WebhookRequest:
        return WebhookRequest("not-the-token", request.headers, request.body)


class TestJsonlConformance(CrmConformance):
    pass


@pytest.fixture
def crm_under_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CrmUnderTest:
    install_jsonl(monkeypatch, tmp_path / "dist")
    return CrmUnderTest("jsonl", {"path": "cases.jsonl", "webhook_token": TOKEN}, JsonlProbe)
