"""The email plugin's hooks called through the core on an opened (not running) bridge:
deliver_reply under the core's at-most-once delivery log against real relays on loopback,
reply-token threading,
the rate limit, attachment limits and the health check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest
from casebridge.bridge import Bridge
from casebridge.delivery_log import NAMESPACE, Attempt, Stage
from casebridge.errors import TransientError
from casebridge.model import (
    Author,
    DeliveryState,
    Message,
    RawInbound,
    Session,
    derived_id,
    utcnow,
)
from casebridge.replies import outbound_message
from casebridge_email.envelope import envelope_fields
from support.bridges import install_jsonl, only_session, settle
from support.bridges import write_config as write_bridge_config
from test_email_plugin_support import SUPPORT, customer_mail, free_port, sink_server

BILLING = "billing@example.com"


@asynccontextmanager
async def opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relay_port: int | None, **email: Any
) -> AsyncIterator[Bridge]:
    install_jsonl(monkeypatch, tmp_path)
    settings: dict[str, Any] = {"listen_host": "127.0.0.1", "listen_port": free_port(),
                                "support_addresses": [SUPPORT], **email}
    if relay_port is not None:
        settings["relay"] = {"host": "127.0.0.1", "port": relay_port, "timeout": 5}
    path = write_bridge_config(tmp_path, bridge={"channels": ["email"]},
                               plugins={"email": settings})
    bridge = Bridge.from_config(path)
    await bridge.open()
    try:
        yield bridge
    finally:
        await bridge.close()


async def receive(bridge: Bridge, data: bytes, *, to: tuple[str, ...] = (SUPPORT,),
                  mail_from: str = "ann@customer.example") -> Any:
    received = await bridge.receive(RawInbound(channel="email", payload=data,
                                               fields=envelope_fields(mail_from, to)))
    await settle(bridge)
    return received


async def agent_message(bridge: Bridge, session: Session, text: str, key: str) -> Message:
    message = outbound_message(
        session, recipient=await bridge.pipeline.replies.reply_address(session),
        message_id=derived_id("test-reply", key), author=Author.AGENT, text=text,
    )
    await bridge.store.add_message(message)
    return message


async def deliver(bridge: Bridge, session: Session, message: Message) -> Any:
    """Through the core's at-most-once path, as the pipeline delivers."""
    transcript = await bridge.store.transcript(session.id)
    return await bridge.pipeline.replies.delivery_log.deliver(session, message, transcript)


@asynccontextmanager
async def hanging_up_relay() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A relay that takes the whole message and then drops the connection unanswered."""
    taken: list[bytes] = []

    async def serve(stream: Any) -> None:
        async with stream:
            await stream.send(b"220 relay.test\r\n")
            buffer = b""
            while True:
                chunk = await stream.receive()
                buffer += chunk
                while b"\r\n" in buffer and not buffer.startswith(b"BODY"):
                    line, buffer = buffer.split(b"\r\n", 1)
                    verb = line[:4].upper()
                    if verb == b"DATA":
                        await stream.send(b"354 go on\r\n")
                        buffer = b"BODY" + buffer
                        break
                    reply = b"221 bye\r\n" if verb == b"QUIT" else b"250 ok\r\n"
                    await stream.send(reply)
                if buffer.startswith(b"BODY") and b"\r\n.\r\n" in buffer:
                    taken.append(buffer[4:])
                    return  # hang up without the final answer

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        try:
            yield port, taken
        finally:
            tg.cancel_scope.cancel()


async def test_hook_deliver_reply_email_sends_once_per_message_id(tmp_path, monkeypatch):
    async with sink_server() as sink, opened(tmp_path, monkeypatch, sink.port) as bridge:
        await receive(bridge, customer_mail("Hello", msgid="<h1@customer.example>"))
        session = await only_session(bridge)
        message = await agent_message(bridge, session, "Hi Ann", "once")
        first = await deliver(bridge, session, message)
        again = await deliver(bridge, session, message)
        assert first.state is DeliveryState.SENT and again == first
        assert len(sink.received) == 1
        assert sink.received[0][1]["Message-ID"] == f"<{first.external_id}>"


async def test_hook_deliver_reply_email_unconfirmed_send_is_not_repeated(tmp_path, monkeypatch):
    async with hanging_up_relay() as (port, taken), opened(tmp_path, monkeypatch, port) as bridge:
        await receive(bridge, customer_mail("Hello", msgid="<u1@customer.example>"))
        session = await only_session(bridge)
        message = await agent_message(bridge, session, "Hi Ann", "unconfirmed")
        first = await deliver(bridge, session, message)
        assert first.state is DeliveryState.FAILED
        assert "may have accepted it" in first.detail
        again = await deliver(bridge, session, message)
        assert again.state is DeliveryState.FAILED and len(taken) == 1


async def test_hook_deliver_reply_email_to_no_address_fails_without_sending(tmp_path, monkeypatch):
    async with sink_server() as sink, opened(tmp_path, monkeypatch, sink.port) as bridge:
        await receive(bridge, customer_mail("Hello", msgid="<na@customer.example>"))
        session = await only_session(bridge)
        message = replace(await agent_message(bridge, session, "Hi", "no-address"),
                          recipients=("+15005550006",))
        delivery = await deliver(bridge, session, message)
        assert delivery.state is DeliveryState.FAILED and "to_addr" in delivery.detail
        assert sink.received == []


async def test_hook_deliver_reply_email_interrupted_attempt_is_not_repeated(
    tmp_path, monkeypatch
):
    async with sink_server() as sink, opened(tmp_path, monkeypatch, sink.port) as bridge:
        await receive(bridge, customer_mail("Hello", msgid="<i1@customer.example>"))
        session = await only_session(bridge)
        message = await agent_message(bridge, session, "Hi Ann", "interrupted")
        # What a runner killed in the middle of a send leaves behind: the core's intent.
        intent = Attempt(message.id, "email", Stage.SENDING, utcnow())
        await bridge.store.put_state(NAMESPACE, message.id, intent.as_json())
        delivery = await deliver(bridge, session, message)
        # A relay cannot be asked whether it took the mail: failed, never sent twice.
        assert delivery.state is DeliveryState.FAILED and "interrupted" in delivery.detail
        assert "not sent again" in delivery.detail
        assert sink.received == []


async def test_hook_deliver_reply_email_relay_down_is_retried_later(tmp_path, monkeypatch):
    down = free_port()
    async with opened(tmp_path, monkeypatch, down) as bridge:
        await receive(bridge, customer_mail("Hello", msgid="<d1@customer.example>"))
        session = await only_session(bridge)
        message = await agent_message(bridge, session, "Hi Ann", "down")
        with pytest.raises(TransientError, match=f"relay 127.0.0.1:{down}"):
            await deliver(bridge, session, message)
        # Failed before any data went out: nothing blocks the next attempt.
        record = await bridge.pipeline.replies.delivery_log.get(message.id)
        assert record is not None and record.stage is Stage.NOT_SENT


async def test_hook_ingest_email_reply_token_beats_the_address_it_was_sent_to(
    tmp_path, monkeypatch
):
    async with (
        sink_server() as sink,
        opened(tmp_path, monkeypatch, sink.port, support_addresses=[SUPPORT, BILLING]) as bridge,
    ):
        await receive(bridge, customer_mail("Printer broken", msgid="<p1@customer.example>"))
        printer = await only_session(bridge)
        reply = await agent_message(bridge, printer, "Which model?", "model")
        await deliver(bridge, printer, reply)
        [(_, sent)] = sink.received
        # A second conversation on another of our addresses.
        await receive(bridge, customer_mail("Invoice wrong", msgid="<b1@customer.example>",
                                            to=BILLING, subject="Invoice"), to=(BILLING,))
        assert len(await bridge.store.list_sessions()) == 2
        # The answer to our printer mail arrives on the billing address: the token decides.
        answer = customer_mail("Model X100", msgid="<p2@customer.example>", to=BILLING,
                               subject="Re: Printer", in_reply_to=sent["Message-ID"])
        await receive(bridge, answer, to=(BILLING,))
        texts = [m.text for m in await bridge.store.transcript(printer.id)]
        assert texts == ["Printer broken", "Which model?", "Model X100"]
        # Someone else quoting our Message-ID does not get into Ann's session.
        forged = customer_mail("Let me in", msgid="<x1@mallory.example>",
                               sender="mallory@mallory.example",
                               in_reply_to=sent["Message-ID"])
        await receive(bridge, forged, mail_from="mallory@mallory.example")
        assert len(await bridge.store.transcript(printer.id)) == 3
        assert len(await bridge.store.list_sessions()) == 3


async def test_hook_ingest_email_rate_limit_and_attachment_limits(tmp_path, monkeypatch):
    async with opened(tmp_path, monkeypatch, None, rate_limit_messages=2,
                      max_attachment_bytes=100, max_attachments=1) as bridge:
        big = customer_mail("big file", msgid="<f1@customer.example>",
                            attachment=("scan.pdf", b"x" * 101))
        await receive(bridge, big)
        session = await only_session(bridge)
        [message] = await bridge.store.transcript(session.id)
        [attachment] = message.attachments
        assert "100-byte attachment limit" in attachment.refused and not attachment.location
        assert any("scan.pdf" in note for note in message.notes)
        await receive(bridge, customer_mail("two", msgid="<f2@customer.example>"))
        third = await receive(bridge, customer_mail("three", msgid="<f3@customer.example>"))
        assert third.dropped.startswith("rate limit")
        assert len(await bridge.store.transcript(session.id)) == 2
        # Other senders are not held back by Ann's flood.
        other = await receive(bridge, customer_mail("hi", msgid="<o@c.example>",
                                                    sender="bob@customer.example"))
        assert other.message_id and not other.dropped


async def test_hook_check_email_reports_the_relay(tmp_path, monkeypatch):
    async with sink_server() as sink, opened(tmp_path / "up", monkeypatch, sink.port) as bridge:
        result = await bridge.hooks.check("email")
        assert (result.ok, result.detail) == (True, "Active")
    down = free_port()
    async with opened(tmp_path / "down", monkeypatch, down) as bridge:
        result = await bridge.hooks.check("email")
        assert not result.ok and f"relay 127.0.0.1:{down} is unreachable" in result.detail


async def test_hook_check_email_without_support_addresses_says_so(tmp_path, monkeypatch):
    async with sink_server() as sink, opened(tmp_path, monkeypatch, sink.port,
                                             support_addresses=[]) as bridge:
        result = await bridge.hooks.check("email")
        assert not result.ok and "no support_addresses" in result.detail


async def test_hook_check_email_without_a_relay_is_a_configuration_error(
    tmp_path, monkeypatch
):
    async with opened(tmp_path, monkeypatch, None) as bridge:
        result = await bridge.hooks.check("email")
        assert not result.ok
        assert "no relay configured" in result.detail and "[plugins.email.relay]" in result.detail
        await receive(bridge, customer_mail("Hello", msgid="<n1@customer.example>"))
        session = await only_session(bridge)
        message = await agent_message(bridge, session, "Hi Ann", "no-relay")
        # Fails at once, saying so, rather than being retried for minutes.
        delivery = await deliver(bridge, session, message)
        assert delivery.state is DeliveryState.FAILED
        assert "no relay configured" in delivery.detail and "not sent" in delivery.detail
        assert "waits" not in delivery.detail
