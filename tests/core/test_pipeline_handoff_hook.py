"""The pipeline with a CRM that implements the ``handoff`` hook: one call per handoff, the
case described only when it must be created, every write recorded in the write log."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from casebridge import hookimpl
from casebridge.bridge import Bridge
from casebridge.jobs import HandoffJob
from casebridge.model import (
    ActivityRef,
    ActivityRequest,
    CaseRef,
    CaseRequest,
    Contact,
    HandoffRequest,
    HandoffResult,
    derived_id,
)
from support.bridges import inbound, only_session, settle, write_config
from support.plugins import LoopChannel


class OneCallCrm:
    """A CRM in memory that writes a whole handoff in one ``handoff`` call."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.open_cases: dict[str, CaseRef] = {}
        self.described: list[CaseRequest] = []
        self.activities: dict[str, ActivityRequest] = {}

    @hookimpl
    async def handoff(self, request: HandoffRequest) -> HandoffResult:
        self.calls.append("handoff")
        contact = replace(request.contact, crm_id=f"crm-{request.contact.id}")
        case = self.open_cases.get(contact.crm_id)
        if case is None:
            self.described.append(await request.describe(contact))
            case = CaseRef("mem", request.key, "CASE-1")
        pending = await request.activities(case)
        for activity in pending:
            self.activities.setdefault(activity.key, activity)
        return HandoffResult(
            contact,
            case,
            case.id == request.key,
            [ActivityRef("mem", a.key, case.id) for a in pending],
        )

    @hookimpl
    async def append_activity(self, request: ActivityRequest) -> ActivityRef:
        self.calls.append("append_activity")
        self.activities.setdefault(request.key, request)
        return ActivityRef("mem", request.key, request.case.id)

    @hookimpl
    async def get_case(self, case_id: str) -> CaseRef | None:
        return CaseRef("mem", case_id)

    @hookimpl
    async def sync_contact(self, contact: Contact) -> Contact:
        self.calls.append("sync_contact")
        return contact

    @hookimpl
    async def create_case(self, request: CaseRequest) -> CaseRef:
        self.calls.append("create_case")
        return CaseRef("mem", request.key)


@pytest.fixture
async def world(tmp_path: Path):
    crm = OneCallCrm()
    path = write_config(tmp_path, bridge={"crm": "mem"})
    bridge = Bridge.from_config(path, plugins={"loop": LoopChannel(), "mem": crm})
    await bridge.open()
    try:
        yield bridge, crm
    finally:
        await bridge.close()


async def hand_off(bridge: Bridge, session_id: str) -> None:
    await bridge.enqueue(HandoffJob(session_id, "asked", "test").to_new_job())
    await settle(bridge)


async def test_hook_handoff_writes_the_case_and_every_message_in_one_call(world) -> None:
    bridge, crm = world
    for n in range(3):
        await bridge.receive(inbound(f"message {n}", msg_id=f"h{n}"))
    await settle(bridge)
    session = await only_session(bridge)
    await hand_off(bridge, session.id)

    assert crm.calls == ["handoff"]
    [described] = crm.described
    assert described.key == derived_id("case", session.id)
    assert "message 0" in described.summary.description
    session = await only_session(bridge)
    assert session.case is not None and session.case.case_id == described.key
    assert session.case.number == "CASE-1"
    assert session.contact.crm_id == f"crm-{session.contact.id}"
    # The write log knows every activity, so the sync job after the handoff writes nothing.
    transcript = await bridge.store.transcript(session.id)
    for message in transcript:
        write = await bridge.store.get_write(derived_id("activity", session.id, message.id))
        assert write is not None and write.crm_id
    assert [a.message.text for a in crm.activities.values()] == [m.text for m in transcript]

    # After the handoff a new message goes to the case through the per-message hook.
    await bridge.receive(inbound("any news?", msg_id="h3"))
    await settle(bridge)
    assert crm.calls == ["handoff", "append_activity"]


async def test_hook_handoff_appending_to_an_open_case_describes_nothing(world) -> None:
    bridge, crm = world
    await bridge.receive(inbound("it is broken again", msg_id="a0"))
    await settle(bridge)
    session = await only_session(bridge)
    crm.open_cases[f"crm-{session.contact.id}"] = CaseRef("mem", "case-from-before", "CASE-0")
    await hand_off(bridge, session.id)
    assert crm.calls == ["handoff"] and crm.described == []
    session = await only_session(bridge)
    assert session.case.case_id == "case-from-before"
    assert [a.case.id for a in crm.activities.values()] == ["case-from-before"]
