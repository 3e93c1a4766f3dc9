"""The core knows no transport: what a customer's address is comes from the channel
(``Inbound.sender_kind``), a reply goes where the customer last wrote from in the session,
and a dropped inbound is listed by the channel's ``sender`` and ``transport_id``."""

from __future__ import annotations

from pathlib import Path

import pytest
from casebridge.bridge import Bridge
from casebridge.intake import contact_addresses, legacy_sender_kind
from casebridge.jobs import HandoffJob, InboundJob, ReplyJob
from casebridge.model import (
    AddressKind,
    Author,
    Contact,
    Direction,
    Inbound,
    Message,
    RawInbound,
    Session,
    SessionStatus,
    derived_id,
)
from casebridge.replies import reply_address
from hypothesis import given
from hypothesis import strategies as st
from support.bridges import inbound, install_jsonl, only_session, settle, write_config
from support.plugins import LoopChannel


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    install_jsonl(monkeypatch, tmp_path)
    loop = LoopChannel()
    bridge = Bridge.from_config(write_config(tmp_path, bridge={"acknowledge": True}),
                                plugins={"loop": loop})
    await bridge.open()
    try:
        yield bridge, loop
    finally:
        await bridge.close()


@given(st.text(min_size=1), st.sampled_from(list(AddressKind)))
def test_an_address_is_filed_by_its_kind_whatever_it_holds(address: str,
                                                           kind: AddressKind) -> None:
    emails, phones = contact_addresses(address, kind)
    assert (emails, phones) == (([address.lower()], []) if kind is AddressKind.EMAIL
                                else ([], [address]))


def test_a_channel_must_say_what_its_sender_is() -> None:
    message = Message(id="m", channel="loop", direction=Direction.INBOUND,
                      author=Author.CUSTOMER, external_id="e", sender="x", recipients=(),
                      text="hi")
    with pytest.raises(ValueError, match="sender_kind"):
        Inbound(message)
    assert Inbound(message, sender_kind="phone").sender_kind is AddressKind.PHONE
    assert Inbound(None, dropped="auto-reply").sender_kind is None


async def test_a_phone_sender_with_an_at_sign_is_still_a_phone(world) -> None:
    # The core files the address as the channel says, never by its characters.
    bridge, _ = world
    await bridge.receive(inbound("Hello", msg_id="p1", sender="+1555@0100", kind="phone"))
    await bridge.receive(inbound("Hello", msg_id="e1", sender="DESK-7", kind="email"))
    await settle(bridge)
    contacts = [s.contact for s in await bridge.store.list_sessions()]
    [phone_contact, email_contact] = sorted(contacts, key=lambda c: c.phones == ())
    assert phone_contact.phones == ("+1555@0100",) and phone_contact.emails == ()
    assert email_contact.emails == ("desk-7",) and email_contact.phones == ()


async def test_the_reply_goes_where_the_customer_wrote_from(world) -> None:
    bridge, loop = world
    # A contact known by an e-mail address (listed first) and a phone number writes by SMS.
    await bridge.store.create_contact(Contact(id="ann", name="Ann", emails=("ann@example.com",),
                                              phones=("+15550100",)))
    await bridge.receive(inbound("Text me back", msg_id="p1", sender="+15550100",
                                 kind="phone", to="+15559999"))
    await settle(bridge)
    session = await only_session(bridge)
    assert session.contact.id == "ann"
    await bridge.enqueue(HandoffJob(session.id, "asked", "test").to_new_job())
    await settle(bridge)
    session = await only_session(bridge)
    assert session.case is not None
    await bridge.enqueue(ReplyJob("jsonl", "rep-1", session.case.case_id, "On it").to_new_job())
    await settle(bridge)
    assert [(m.author, m.recipients, m.sender) for m in loop.sent] == [
        (Author.SYSTEM, ("+15550100",), "+15559999"),  # the acknowledgement
        (Author.AGENT, ("+15550100",), "+15559999"),
    ]


def test_reply_address_is_the_latest_customer_message_sender() -> None:
    session = Session(id="s", channel="loop", contact=Contact(id="c"),
                      status=SessionStatus.ASSISTANT)
    transcript = [
        _message("m1", "ann@example.com", Direction.INBOUND, Author.CUSTOMER),
        _message("m2", "desk", Direction.OUTBOUND, Author.AGENT),
        _message("m3", "ann@home.example", Direction.INBOUND, Author.CUSTOMER),
        _message("m4", "desk", Direction.OUTBOUND, Author.SYSTEM),
    ]
    assert reply_address(session, transcript) == "ann@home.example"
    with pytest.raises(Exception, match="no customer message"):
        reply_address(session, transcript[1:2])


async def test_an_inbound_job_queued_before_the_kind_was_recorded_still_threads(world) -> None:
    bridge, _ = world
    await bridge.receive(inbound("Hello", msg_id="old-1", sender="+15550100", kind="phone"))
    await settle(bridge)
    known = (await only_session(bridge)).contact
    # A second message whose job has the old payload (no sender_kind), as left by a runner
    # before the upgrade: the known contact is found whatever kind it was filed as.
    message = Message(id=derived_id("loop", "old-2"), channel="loop",
                      direction=Direction.INBOUND, author=Author.CUSTOMER,
                      external_id="old-2", sender="+15550100", recipients=("desk",),
                      text="Me again")
    job = InboundJob(message.id, "t", None, "loop", message.sender).to_new_job()
    assert "sender_kind" not in job.payload
    assert await bridge.store.accept_inbound(message, job)
    await settle(bridge)
    stored = await bridge.store.get_message(message.id)
    assert stored is not None and stored.session_id
    session = await bridge.store.get_session(stored.session_id)
    assert session is not None and session.contact.id == known.id


async def test_a_dropped_inbound_is_listed_by_the_channels_sender_and_id(world) -> None:
    bridge, _ = world
    for _ in range(2):  # the provider retries: listed once, by its transport id
        received = await bridge.receive(inbound("STOP", msg_id="sid-1", sender="+15550100",
                                                kind="phone"))
        assert received.dropped == "opt-out keyword"
    [dropped] = await bridge.store.list_dropped(10)
    assert (dropped.channel, dropped.sender, dropped.reason) == (
        "loop", "+15550100", "opt-out keyword")
    # Without a transport id, the payload's digest tells one inbound from another.
    raw = RawInbound(channel="loop", payload=b"STOP", sender="+15550101",
                     fields={"from": "+15550101", "body": "STOP", "id": "x"})
    await bridge.receive(raw)
    await bridge.receive(raw)
    assert [d.sender for d in await bridge.store.list_dropped(10)].count("+15550101") == 1


def _message(id_: str, sender: str, direction: Direction, author: Author) -> Message:
    return Message(id=id_, channel="loop", direction=direction, author=author,
                   external_id=id_, sender=sender, recipients=("x",), text="t")


def test_only_a_job_from_before_the_kind_was_recorded_gets_the_old_rule() -> None:
    # What the untyped pipeline did for every sender; now only for such leftover jobs,
    # and only when no contact holds the address yet.
    assert legacy_sender_kind("ann@example.com") is AddressKind.EMAIL
    assert legacy_sender_kind("+15550100") is AddressKind.PHONE
