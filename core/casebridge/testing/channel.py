"""The channel conformance suite: what every channel plugin must do, whatever its transport.

``ingest`` turns what the transport received into a customer message with a stable id (so
the store's unique keys drop a redelivery), drops what must not reach a session (loops,
opt-outs) with the reason, and never fails on garbage with anything but a permanent error.
``deliver_reply`` sends once and answers SENT, or answers a final REFUSED / FAILED with the
reason instead of raising; a channel with ``reconcile_delivery`` finds a reply it sent, and
no other. And a message sent through the real transport lands in a
session.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest

from ..errors import PermanentError
from ..model import Author, DeliveryState, Direction, Message, RawInbound, Session, utcnow
from ..replies import outbound_message
from .harness import Harness, running_bridge


class ChannelProbe(Protocol):
    """What the suite asks of the transport behind the plugin. Write one per channel."""

    def customer(self, n: int) -> str:
        """The address of customer ``n`` on this channel, as the channel normalizes it."""
        ...

    def inbound(self, sender: str, text: str, external_id: str) -> RawInbound:
        """What the transport hands the plugin when ``sender`` writes ``text``."""
        ...

    def dropped(self, sender: str) -> Sequence[tuple[RawInbound, str]]:
        """Inbounds the channel must drop, each with a word its reason contains."""
        ...

    def garbage(self) -> Sequence[RawInbound]:
        """Malformed inbounds: ``ingest`` may drop them or raise PermanentError, no more."""
        ...

    async def send_inbound(self, sender: str, text: str, external_id: str) -> None:
        """Send ``text`` from ``sender`` through the real transport (an SMTP session, a
        signed webhook call) and return once the transport acknowledged it."""
        ...

    async def sent(self) -> list[tuple[str, str]]:
        """(recipient, text) of every message the transport delivered so far."""
        ...

    async def refuse(self, address: str) -> None:
        """Make the transport refuse ``address`` from now on (a bounce, an opt-out)."""
        ...


@dataclass
class ChannelUnderTest:
    """How the suite builds a bridge around the channel: its name, its
    ``[plugins.<name>]`` settings, a probe factory given the running harness, and the
    rest of the TOML (the CRM the bridge needs, with its settings)."""

    name: str
    settings: Mapping[str, Any]
    probe: Any  # Callable[[Harness], ChannelProbe]
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class World:
    harness: Harness
    name: str
    probe: ChannelProbe

    @property
    def hooks(self) -> Any:
        return self.harness.bridge.hooks


def _token() -> str:
    return secrets.token_hex(6)


async def _reply(world: World, recipient: str, text: str) -> tuple[Session, Message]:
    """A stored session of ``recipient`` (from a real inbound) and an agent reply in it."""
    bridge = world.harness.bridge
    received = await bridge.receive(world.probe.inbound(recipient, "Hello, I need help.",
                                                        _token()))
    assert received.message_id, f"the inbound was not stored: {received}"
    await world.harness.settle()
    message_row = await bridge.store.get_message(received.message_id)
    assert message_row is not None and message_row.session_id
    session = await bridge.store.get_session(message_row.session_id)
    assert session is not None
    reply = outbound_message(session, recipient=await bridge.pipeline.replies.reply_address(
        session), message_id=f"reply-{_token()}", author=Author.AGENT, text=text)
    await bridge.store.add_message(reply)
    return session, reply


class ChannelConformance:
    """Subclass in your plugin's tests and give a ``channel_under_test`` fixture."""

    @pytest.fixture
    async def channel(
        self, channel_under_test: ChannelUnderTest, tmp_path: Path
    ) -> AsyncIterator[World]:
        under = channel_under_test
        config = dict(under.config)
        config["bridge"] = {**dict(under.config.get("bridge", {})), "channels": [under.name]}
        config["plugins"] = {**dict(under.config.get("plugins", {})),
                             under.name: dict(under.settings)}
        async with running_bridge(tmp_path, config) as harness:
            yield World(harness, under.name, under.probe(harness))

    @pytest.mark.anyio
    async def test_ingest_makes_a_customer_message(self, channel: World) -> None:
        sender, external = channel.probe.customer(1), _token()
        raw = channel.probe.inbound(sender, "My printer prints blank pages.", external)
        inbound = await channel.hooks.ingest(channel.name, raw)
        message = inbound.message
        assert message is not None, f"dropped: {inbound.dropped}"
        assert (message.channel, message.direction, message.author) == (
            channel.name, Direction.INBOUND, Author.CUSTOMER)
        assert message.sender == sender
        assert "My printer prints blank pages." in message.text
        assert message.id and message.external_id

    @pytest.mark.anyio
    async def test_a_redelivered_inbound_is_one_message(self, channel: World) -> None:
        raw = channel.probe.inbound(channel.probe.customer(1), "Hello again.", _token())
        first = await channel.hooks.ingest(channel.name, raw)
        second = await channel.hooks.ingest(channel.name, raw)
        assert first.message is not None and second.message is not None
        assert (first.message.id, first.message.external_id) == (
            second.message.id, second.message.external_id)
        bridge = channel.harness.bridge
        stored = await bridge.receive(raw)
        again = await bridge.receive(raw)
        assert stored.message_id and not stored.duplicate and again.duplicate

    @pytest.mark.anyio
    async def test_what_must_not_reach_a_session_is_dropped_with_the_reason(
        self, channel: World
    ) -> None:
        cases = channel.probe.dropped(channel.probe.customer(1))
        assert cases, "the probe names no inbound the channel drops"
        for raw, word in cases:
            inbound = await channel.hooks.ingest(channel.name, raw)
            assert inbound.message is None, f"not dropped ({word}): {inbound.message}"
            assert word.lower() in inbound.dropped.lower(), (word, inbound.dropped)

    @pytest.mark.anyio
    async def test_a_dropped_inbound_is_listed_once_by_its_sender(self, channel: World) -> None:
        # The transport sets who it is from and its own id (or the core keys the record
        # by the payload): a provider's retry of a dropped inbound is not listed twice.
        bridge = channel.harness.bridge
        cases = channel.probe.dropped(channel.probe.customer(3))
        for raw, _ in cases:
            for _ in range(2):
                assert (await bridge.receive(raw)).dropped
        listed = await bridge.store.list_dropped(100)
        assert len(listed) == len(cases), listed
        for (raw, word), record in zip(cases, reversed(listed), strict=True):
            assert (record.channel, record.sender) == (channel.name, raw.sender), record
            assert word.lower() in record.reason.lower(), (word, record.reason)

    @pytest.mark.anyio
    async def test_garbage_is_dropped_or_refused_never_a_crash(self, channel: World) -> None:
        for raw in channel.probe.garbage():
            try:
                inbound = await channel.hooks.ingest(channel.name, raw)
            except PermanentError:
                continue
            assert inbound.message is not None or inbound.dropped, raw

    @pytest.mark.anyio
    async def test_deliver_reply_sends_once(self, channel: World) -> None:
        customer = channel.probe.customer(2)
        session, reply = await _reply(channel, customer, "A replacement is on its way.")
        transcript = await channel.harness.bridge.store.transcript(session.id)
        before = len(await channel.probe.sent())
        delivery = await channel.hooks.deliver_reply(channel.name, session, reply, transcript)
        assert delivery.state is DeliveryState.SENT, delivery
        assert delivery.external_id
        sent = (await channel.probe.sent())[before:]
        assert [to for to, _ in sent] == [customer], sent
        assert "A replacement is on its way." in sent[0][1]

    @pytest.mark.anyio
    async def test_reconcile_delivery_finds_a_sent_reply_and_no_other(
        self, channel: World
    ) -> None:
        if not channel.hooks.implements(channel.name, "reconcile_delivery"):
            pytest.skip("no reconcile_delivery: the core fails a reply in doubt, never resends")
        customer, since = channel.probe.customer(5), utcnow() - timedelta(seconds=1)
        session, reply = await _reply(channel, customer, "We found your parcel.")
        transcript = await channel.harness.bridge.store.transcript(session.id)
        delivery = await channel.hooks.deliver_reply(channel.name, session, reply, transcript)
        assert delivery.state is DeliveryState.SENT, delivery
        found = await channel.hooks.reconcile_delivery(channel.name, session, reply, since)
        assert found is not None and found.state is DeliveryState.SENT, found
        assert found.external_id == delivery.external_id
        # A reply never sent is not found, even one with the same words to the same customer.
        _, twin = await _reply(channel, customer, "We found your parcel.")
        assert await channel.hooks.reconcile_delivery(channel.name, session, twin, since) is None

    @pytest.mark.anyio
    async def test_a_refused_delivery_is_final_and_says_why(self, channel: World) -> None:
        customer = channel.probe.customer(3)
        session, reply = await _reply(channel, customer, "Hello?")
        await channel.probe.refuse(customer)
        transcript = await channel.harness.bridge.store.transcript(session.id)
        before = len(await channel.probe.sent())
        delivery = await channel.hooks.deliver_reply(channel.name, session, reply, transcript)
        assert delivery.state in (DeliveryState.REFUSED, DeliveryState.FAILED), delivery
        assert delivery.detail, "a refusal must say why"
        assert (await channel.probe.sent())[before:] == []

    @pytest.mark.anyio
    async def test_a_message_through_the_transport_lands_in_a_session(
        self, channel: World
    ) -> None:
        bridge, customer, text = channel.harness.bridge, channel.probe.customer(4), _token()
        await channel.probe.send_inbound(customer, f"Through the wire {text}", _token())
        # The transport acknowledged only once the message was stored: its inbound job is
        # there before any worker ran, or, when it was kept to be parsed later
        # (receive_later), the raw inbound and its ingest job.
        jobs = await bridge.store.list_jobs()
        assert [j for j in jobs if j.kind in ("inbound", "ingest")], \
            "acknowledged but not stored"
        await channel.harness.settle()
        texts = [m.text for s in await bridge.store.list_sessions()
                 for m in await bridge.store.transcript(s.id)]
        assert any(text in t for t in texts), texts
