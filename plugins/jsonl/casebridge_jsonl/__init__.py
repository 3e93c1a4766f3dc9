"""An example CRM plugin for casebridge: cases and activities in a JSON-lines file.

Small enough to read in one sitting, complete enough to run the whole pipeline: contacts,
case-append, idempotent case and activity writes, a reply webhook and a health check. Each
line of the file is one record: ``{"type": "case" | "activity" | "file" | "contact" | "status",
...}``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
from casebridge.plugin import (
    ActivityRef,
    ActivityRequest,
    AttachmentRequest,
    CaseRef,
    CaseRequest,
    CheckResult,
    ConfigSection,
    Contact,
    CrmEvent,
    PluginContext,
    Reply,
    Secret,
    WebhookRefused,
    WebhookRequest,
    derived_id,
    hookimpl,
    read_json,
)


@dataclass(frozen=True, slots=True)
class JsonlSettings:
    """``[plugins.jsonl]``: the file (relative to the bridge's data folder) and the token
    that the webhook URL ``/webhooks/jsonl/<token>`` must carry."""

    path: str = "cases.jsonl"
    webhook_token: Secret | None = None


class JsonlCrm:
    """The plugin object; the entry point names the class, so each runner gets its own."""

    name = "jsonl"

    def __init__(self) -> None:
        self.path = Path("cases.jsonl")
        self.token: Secret | None = None
        self._lock = threading.Lock()

    # -- set-up ---------------------------------------------------------------------------

    @hookimpl
    def config_section(self) -> ConfigSection:
        return ConfigSection(self.name, JsonlSettings)

    @hookimpl
    def configure(self, context: PluginContext) -> None:
        settings: JsonlSettings = context.settings
        # The name the TOML gives this instance: two instances are two CRMs.
        self.name = context.name
        self.path = context.data_dir / settings.path
        self.token = settings.webhook_token

    @hookimpl
    async def check(self) -> CheckResult:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a"):
                pass
        except OSError as exc:
            return CheckResult(self.name, False, f"cannot write {self.path}: {exc.strerror}")
        return CheckResult(self.name, True, "Active")

    # -- the file -------------------------------------------------------------------------

    def _records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def _append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()

    async def _locked(self, work: Any) -> Any:
        def run() -> Any:
            with self._lock:
                return work()

        return await anyio.to_thread.run_sync(run)

    def _case(self, case_id: str, records: list[dict[str, Any]]) -> CaseRef | None:
        cases = [r for r in records if r["type"] == "case" and r["id"] == case_id]
        if not cases:
            return None
        closed = any(r["type"] == "status" and r["case_id"] == case_id and r["final"]
                     for r in records)
        return CaseRef(self.name, case_id, cases[0]["number"],
                       "closed" if closed else "new", not closed)

    # -- CRM hooks ------------------------------------------------------------------------

    @hookimpl
    async def sync_contact(self, contact: Contact) -> Contact:
        def work() -> Contact:
            addresses = set(contact.emails + contact.phones)
            for record in self._records():
                if record["type"] == "contact" and addresses & set(record["addresses"]):
                    return replace(contact, crm_id=record["id"])
            crm_id = derived_id("jsonl-contact", *sorted(addresses))
            self._append({"type": "contact", "id": crm_id, "name": contact.name,
                          "addresses": sorted(addresses)})
            return replace(contact, crm_id=crm_id)

        return await self._locked(work)

    @hookimpl
    async def find_open_case(self, contact: Contact) -> CaseRef | None:
        def work() -> CaseRef | None:
            records = self._records()
            for record in reversed(records):
                if record["type"] == "case" and record["contact_id"] == contact.crm_id:
                    case = self._case(record["id"], records)
                    if case is not None and case.is_open:
                        return case
            return None

        return await self._locked(work)

    @hookimpl
    async def get_case(self, case_id: str) -> CaseRef | None:
        return await self._locked(lambda: self._case(case_id, self._records()))

    @hookimpl
    async def create_case(self, request: CaseRequest) -> CaseRef:
        def work() -> CaseRef:
            # The request key is the case id: writing the same key twice finds the first.
            records = self._records()
            existing = self._case(request.key, records)
            if existing is not None:
                return existing
            number = f"JL{sum(r['type'] == 'case' for r in records) + 1:06d}"
            self._append({
                "type": "case", "id": request.key, "number": number,
                "subject": request.summary.subject, "description": request.summary.description,
                "contact_id": request.contact.crm_id, "session_id": request.session.id,
                "fields": {k: v.value for k, v in request.fields.items()},
            })
            return CaseRef(self.name, request.key, number)

        return await self._locked(work)

    @hookimpl
    async def append_activity(self, request: ActivityRequest) -> ActivityRef:
        def work() -> ActivityRef:
            for record in self._records():
                if record["type"] == "activity" and record["id"] == request.key:
                    return ActivityRef(self.name, request.key, record["case_id"])
            self._append({
                "type": "activity", "id": request.key, "case_id": request.case.id,
                "title": request.title, "body": request.body_text,
                "author": request.message.author.value, "message_id": request.message.id,
                "sent_at": request.message.sent_at.isoformat(), "first": request.first,
            })
            return ActivityRef(self.name, request.key, request.case.id)

        return await self._locked(work)

    @hookimpl
    async def attach_file(self, request: AttachmentRequest) -> str:
        def work() -> str:
            if any(r["type"] == "file" and r["id"] == request.key for r in self._records()):
                return request.key
            attachment = request.attachment
            self._append({
                "type": "file", "id": request.key, "case_id": request.case.id,
                "message_id": request.message.id, "name": attachment.name,
                "content_type": attachment.content_type, "size": len(request.data),
                "sha256": hashlib.sha256(request.data).hexdigest(),
            })
            return request.key

        return await self._locked(work)

    @hookimpl
    async def read_webhook(self, request: WebhookRequest) -> list[CrmEvent]:
        expected = self.token.reveal() if self.token else ""
        if not expected or not hmac.compare_digest(request.path_token, expected):
            raise WebhookRefused("wrong webhook token", status=403)
        try:
            event = read_json(request.body)
            kind, case_id = event["event_type"], event["caseId"]
        except (ValueError, KeyError, TypeError):
            raise WebhookRefused("expected JSON with event_type and caseId", status=400) from None
        if kind == "case_closed":
            await self._locked(lambda: self._append(
                {"type": "status", "case_id": case_id, "final": True}))
            return [CrmEvent("case_closed", self.name, case_id)]
        if kind == "new_activity":
            reply = Reply(self.name, str(event["activityId"]), case_id, str(event["text"]),
                          author_name=str(event.get("author", "")))
            return [CrmEvent("agent_reply", self.name, case_id, reply)]
        raise WebhookRefused(f"unknown event_type {kind!r}", status=400)
