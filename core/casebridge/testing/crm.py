"""The CRM conformance suite: what every CRM plugin must do, whatever CRM it speaks to.

Hook by hook (``casebridge.hookspecs``): contacts found or created once; cases and
activities written at most once per key, found again when an earlier attempt may have
reached the CRM; open cases found, closed ones not; webhooks that turn a rep's reply and a
closed case into events and refuse a forgery. Then the pipeline end to end: a conversation
handed off, appended to, replied to and closed, with nothing written twice.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import pytest

from ..errors import WebhookRefused
from ..jobs import HandoffJob, SyncJob
from ..model import (
    ActivityRequest,
    Author,
    CaseRef,
    CaseRequest,
    Contact,
    Direction,
    Message,
    Session,
    SessionStatus,
    Summary,
    WebhookRequest,
    derived_id,
)
from .harness import Harness, LoopChannel, running_bridge


class CrmProbe(Protocol):
    """What the suite asks of the CRM behind the plugin. Write one per CRM plugin."""

    async def case_ids(self) -> list[str]:
        """Every case the CRM holds."""
        ...

    async def activity_ids(self, case_id: str) -> list[str]:
        """Every activity on the case, in the order they were written."""
        ...

    async def reply_webhook(self, case_id: str, text: str) -> WebhookRequest:
        """Make a rep reply ``text`` on the case, and return the webhook call the CRM then
        makes to the bridge."""
        ...

    async def closed_webhook(self, case_id: str) -> WebhookRequest:
        """Close the case, and return the webhook call the CRM then makes."""
        ...

    def forged_webhook(self, request: WebhookRequest) -> WebhookRequest:
        """``request`` as someone without the webhook secret would send it."""
        ...


@dataclass
class CrmUnderTest:
    """How the suite builds a bridge around the plugin: its name, its ``[plugins.<name>]``
    settings, and a factory for its probe, given the running harness."""

    name: str
    settings: Mapping[str, Any]
    probe: Any  # Callable[[Harness], CrmProbe]
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class World:
    harness: Harness
    name: str
    probe: CrmProbe
    loop: LoopChannel

    @property
    def hooks(self) -> Any:
        return self.harness.bridge.hooks


def _contact(n: int) -> Contact:
    token = secrets.token_hex(4)
    return Contact(f"c-{token}", f"Customer {n}", (f"customer{n}.{token}@example.com",))


def _requests(contact: Contact, case: CaseRef | None = None) -> tuple[CaseRequest, Session]:
    session = Session(derived_id("session", contact.id), "loop", contact,
                      SessionStatus.HANDED_OFF, subject="Printer")
    request = CaseRequest(derived_id("case", session.id), session, contact,
                          Summary("Printer broken", "The printer prints blank pages."), {})
    return request, session


def _activity(case: CaseRef, session: Session, n: int, *, first: bool = False) -> ActivityRequest:
    message = Message(derived_id("message", session.id, str(n)), "loop", Direction.INBOUND,
                      Author.CUSTOMER, f"x-{n}", session.contact.emails[0], ("desk",),
                      f"Message {n}: it still prints blank pages.", session_id=session.id)
    return ActivityRequest(derived_id("activity", session.id, message.id), case, session,
                           message, f"Email from customer ({n})", message.text, "", first)


class CrmConformance:
    """Subclass in your plugin's tests and give a ``crm_under_test`` fixture."""

    @pytest.fixture
    async def crm(self, crm_under_test: CrmUnderTest, tmp_path: Path) -> AsyncIterator[World]:
        loop = LoopChannel()
        under = crm_under_test
        config = dict(under.config)
        config["bridge"] = {**dict(under.config.get("bridge", {})), "crm": under.name,
                            "channels": ["loop"]}
        config["plugins"] = {**dict(under.config.get("plugins", {})),
                             under.name: dict(under.settings)}
        async with running_bridge(tmp_path, config, plugins={"loop": loop}) as harness:
            yield World(harness, crm_under_test.name, crm_under_test.probe(harness), loop)

    # -- hooks one by one -----------------------------------------------------------------

    @pytest.mark.anyio
    async def test_sync_contact_finds_or_creates_once(self, crm: World) -> None:
        ann, bob = _contact(1), _contact(2)
        first = await crm.hooks.sync_contact(crm.name, ann)
        again = await crm.hooks.sync_contact(crm.name, ann)
        other = await crm.hooks.sync_contact(crm.name, bob)
        assert first.crm_id, "sync_contact returned no CRM id"
        assert first.crm_id == again.crm_id != other.crm_id

    @pytest.mark.anyio
    async def test_create_case_once_per_key_and_find_it(self, crm: World) -> None:
        contact = await crm.hooks.sync_contact(crm.name, _contact(1))
        request, _ = _requests(contact)
        case = await crm.hooks.create_case(crm.name, request)
        retried = await crm.hooks.create_case(crm.name, replace(request, maybe_written=True))
        assert (retried.id, retried.number) == (case.id, case.number)
        assert (await crm.probe.case_ids()).count(case.id) == 1
        assert len(await crm.probe.case_ids()) == 1, "a retried create_case wrote a second case"
        fetched = await crm.hooks.get_case(crm.name, case.id)
        assert fetched is not None and fetched.is_open and fetched.id == case.id
        found = await crm.hooks.find_open_case(crm.name, contact)
        assert found is not None and found.id == case.id
        assert await crm.hooks.get_case(crm.name, derived_id("no such case")) is None
        stranger = await crm.hooks.sync_contact(crm.name, _contact(3))
        assert await crm.hooks.find_open_case(crm.name, stranger) is None

    @pytest.mark.anyio
    async def test_append_activity_once_per_key(self, crm: World) -> None:
        contact = await crm.hooks.sync_contact(crm.name, _contact(1))
        request, session = _requests(contact)
        case = await crm.hooks.create_case(crm.name, request)
        activity = _activity(case, session, 1, first=True)
        first = await crm.hooks.append_activity(crm.name, activity)
        second = await crm.hooks.append_activity(crm.name,
                                                 replace(activity, maybe_written=True))
        assert first.id == second.id and first.case_id == case.id
        assert await crm.probe.activity_ids(case.id) == [first.id]

    @pytest.mark.anyio
    async def test_append_activities_in_order_once_per_key(self, crm: World) -> None:
        if not crm.hooks.implements(crm.name, "append_activities"):
            pytest.skip(f"{crm.name} does not implement append_activities (optional)")
        contact = await crm.hooks.sync_contact(crm.name, _contact(1))
        request, session = _requests(contact)
        case = await crm.hooks.create_case(crm.name, request)
        batch = [_activity(case, session, n, first=n == 0) for n in range(5)]
        first = await crm.hooks.append_activity(crm.name, batch[0])
        # The first one may already be written: a retried batch writes only the rest.
        refs = await crm.hooks.append_activities(
            crm.name, [replace(a, maybe_written=True) for a in batch])
        assert refs[0].id == first.id
        assert await crm.probe.activity_ids(case.id) == [r.id for r in refs]

    @pytest.mark.anyio
    async def test_webhook_reply_and_close_become_events(self, crm: World) -> None:
        contact = await crm.hooks.sync_contact(crm.name, _contact(1))
        request, _ = _requests(contact)
        case = await crm.hooks.create_case(crm.name, request)
        call = await crm.probe.reply_webhook(case.id, "We have sent a replacement.")
        events = await crm.hooks.read_webhook(crm.name, call)
        replies = [e for e in events if e.kind == "agent_reply"]
        assert len(replies) == 1 and replies[0].reply is not None
        assert replies[0].case_id == case.id
        assert "We have sent a replacement." in replies[0].reply.text
        closing = await crm.probe.closed_webhook(case.id)
        closed = await crm.hooks.read_webhook(crm.name, closing)
        assert [e.case_id for e in closed if e.kind == "case_closed"] == [case.id]
        fetched = await crm.hooks.get_case(crm.name, case.id)
        assert fetched is not None and not fetched.is_open
        assert await crm.hooks.find_open_case(crm.name, contact) is None

    @pytest.mark.anyio
    async def test_forged_webhook_is_refused(self, crm: World) -> None:
        contact = await crm.hooks.sync_contact(crm.name, _contact(1))
        request, _ = _requests(contact)
        case = await crm.hooks.create_case(crm.name, request)
        genuine = await crm.probe.closed_webhook(case.id)
        with pytest.raises(WebhookRefused) as refused:
            await crm.hooks.read_webhook(crm.name, crm.probe.forged_webhook(genuine))
        assert 400 <= refused.value.status < 500
        answer = await crm.harness.post_webhook(crm.name, crm.probe.forged_webhook(genuine))
        assert 400 <= answer.status_code < 500

    # -- the pipeline end to end ----------------------------------------------------------

    @pytest.mark.anyio
    async def test_a_conversation_end_to_end(self, crm: World) -> None:
        bridge, loop = crm.harness.bridge, crm.loop
        token = secrets.token_hex(4)
        sender = f"ann.{token}@example.com"
        for n, text in enumerate(["My printer prints blank pages.", "Still broken."]):
            await bridge.receive(loop.inbound(sender, text, f"{token}-{n}", name="Ann"))
        await crm.harness.settle()
        [session] = await bridge.store.list_sessions()
        await bridge.enqueue(HandoffJob(
            session.id, "conformance", "conformance", "conformance").to_new_job())
        await crm.harness.settle()
        session = await _session(crm, session.id)
        assert session.case is not None, "the handoff wrote no case"
        case_id = session.case.case_id
        assert await crm.probe.case_ids() == [case_id]
        assert len(await crm.probe.activity_ids(case_id)) == 2

        # A new message after handoff is appended at once; a replayed handoff adds nothing.
        await bridge.receive(loop.inbound(sender, "Any news?", f"{token}-2"))
        await bridge.enqueue(SyncJob(session.id, "conformance", cause="replayed").to_new_job())
        await crm.harness.settle()
        assert len(await crm.probe.activity_ids(case_id)) == 3

        # A rep replies (the CRM may call twice): delivered once on the channel.
        call = await crm.probe.reply_webhook(case_id, "A replacement is on its way.")
        for _ in range(2):
            answer = await crm.harness.post_webhook(crm.name, call)
            assert answer.status_code < 300, answer.text
        await crm.harness.settle()
        delivered = [m.text for m in loop.sent]
        assert len(delivered) == 1 and "A replacement is on its way." in delivered[0]

        # The case closes: so does the session, and the next message opens a new one.
        answer = await crm.harness.post_webhook(crm.name, await crm.probe.closed_webhook(case_id))
        assert answer.status_code < 300, answer.text
        await crm.harness.settle()
        assert (await _session(crm, session.id)).status is SessionStatus.CLOSED
        await bridge.receive(loop.inbound(sender, "It broke again.", f"{token}-3"))
        await crm.harness.settle()
        sessions = await bridge.store.list_sessions()
        assert len(sessions) == 2 and await crm.probe.case_ids() == [case_id]


async def _session(crm: World, session_id: str) -> Session:
    session = await crm.harness.bridge.store.get_session(session_id)
    assert session is not None
    return session
