"""The contract every CRM plugin must keep, run against each CRM we ship: idempotent case and
activity writes keyed by the request key, contact sync, open-case lookup."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from casebridge.bridge import Bridge
from casebridge.model import (
    ActivityRequest,
    Author,
    CaseRequest,
    Contact,
    Direction,
    FieldValue,
    Message,
    Session,
    SessionStatus,
    Summary,
    WebhookRequest,
    derived_id,
)
from support.bridges import HOOK_TOKEN, install_jsonl, write_config
from support.plugins import LoopChannel


@pytest.fixture
async def crm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    install_jsonl(monkeypatch, tmp_path)
    bridge = Bridge.from_config(write_config(tmp_path), plugins={"loop": LoopChannel()})
    await bridge.open()
    try:
        yield bridge.hooks, "jsonl"
    finally:
        await bridge.close()


def requests(contact: Contact):
    session = Session("s-contract", "loop", contact, SessionStatus.HANDED_OFF)
    case = CaseRequest(derived_id("case", session.id), session, contact,
                       Summary("Printer broken", "Ann's printer prints blank pages."),
                       {"Notes": FieldValue("from the contract test")})
    message = Message("m-contract", "loop", Direction.INBOUND, Author.CUSTOMER, "x",
                      "ann@example.com", ("desk",), "It prints blank pages.")
    return session, case, message


async def test_hook_sync_contact_finds_or_creates_once(crm) -> None:
    hooks, name = crm
    first = await hooks.sync_contact(name, Contact("c1", "Ann", ("ann@example.com",)))
    again = await hooks.sync_contact(name, Contact("c1", "Ann", ("ann@example.com",)))
    other = await hooks.sync_contact(name, Contact("c2", "Bob", (), ("+15550001111",)))
    assert first.crm_id and first.crm_id == again.crm_id != other.crm_id


async def test_hook_create_case_is_idempotent_by_key_and_test_hook_get_case(crm) -> None:
    hooks, name = crm
    contact = await hooks.sync_contact(name, Contact("c1", "Ann", ("ann@example.com",)))
    _, request, _ = requests(contact)
    case = await hooks.create_case(name, request)
    retried = await hooks.create_case(name, replace(request, maybe_written=True))
    assert retried.id == case.id and retried.number == case.number
    fetched = await hooks.get_case(name, case.id)
    assert fetched is not None and fetched.is_open and fetched.id == case.id
    assert await hooks.get_case(name, derived_id("no such case")) is None
    assert (await hooks.find_open_case(name, contact)).id == case.id


async def test_hook_append_activity_is_idempotent_by_key(crm) -> None:
    hooks, name = crm
    contact = await hooks.sync_contact(name, Contact("c1", "Ann", ("ann@example.com",)))
    session, request, message = requests(contact)
    case = await hooks.create_case(name, request)
    activity = ActivityRequest(derived_id("activity", session.id, message.id), case, session,
                               message, "LOOP from Ann", "It prints blank pages.", "", True)
    first = await hooks.append_activity(name, activity)
    second = await hooks.append_activity(name, replace(activity, maybe_written=True))
    assert first.id == second.id and first.case_id == case.id


async def test_hook_get_case_reports_closed_cases_as_not_open(crm, tmp_path) -> None:
    hooks, name = crm
    contact = await hooks.sync_contact(name, Contact("c1", "Ann", ("ann@example.com",)))
    _, request, _ = requests(contact)
    case = await hooks.create_case(name, request)
    events = await hooks.read_webhook(name, WebhookRequest(
        HOOK_TOKEN, {}, b'{"event_type": "case_closed", "caseId": "%s"}' % case.id.encode()))
    assert [e.kind for e in events] == ["case_closed"]
    closed = await hooks.get_case(name, case.id)
    assert closed is not None and not closed.is_open
    assert await hooks.find_open_case(name, contact) is None
