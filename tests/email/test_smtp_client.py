"""send_email against a real SMTP sink on loopback (SmtpIngest): delivery, TLS, AUTH and the
mapping of failures to the outbox's error types."""

from __future__ import annotations

import dataclasses
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from casebridge.errors import AmbiguousWriteError, PermanentError, TransientError
from casebridge.secrets import Secret
from casebridge_email.compose import compose_reply
from casebridge_email.mime import parse_email
from casebridge_email.settings import RelaySettings
from casebridge_email.smtp_client import send_email
from casebridge_email.smtp_server import IngestEnvelope, SmtpIngest, password_checker
from support.certs import self_signed

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def reply(**changes: object):  # type: ignore[no-untyped-def]
    fields: dict[str, object] = {
        "from_addr": "support@example.com",
        "from_name": "Support Désk",
        "to_addr": "ann@customer.example",
        "subject": "Réf: Order 42",
        "text": "Your parcel left today.\n.\nA line with only a dot above.",
        "html": "<p>Your parcel</p>",
        "in_reply_to": "<CAF1@mail.gmail.com>",
        "references": ["<root@a.example>"],
        "message_id": "<cb.tok.n1@bridge.example.com>",
        "auto_submitted": False,
        "date": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        **changes,
    }
    return compose_reply(**fields)  # type: ignore[arg-type]


@asynccontextmanager
async def sink(
    on_message: Callable[[IngestEnvelope], Awaitable[None]],
    accepts: Callable[[str], bool] = lambda _: True,
    **kwargs: object,
) -> AsyncIterator[int]:
    ingest = SmtpIngest(
        host="127.0.0.1", port=0, accepts=accepts, max_size=1_000_000, on_message=on_message,
        hostname="sink.test", **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip
    async with anyio.create_task_group() as tg:
        port = await tg.start(ingest.run)
        yield port
        tg.cancel_scope.cancel()


async def test_message_arrives_with_headers_intact() -> None:
    received: list[IngestEnvelope] = []

    async def on_message(envelope: IngestEnvelope) -> None:
        received.append(envelope)

    message = reply()
    async with sink(on_message) as port:
        await send_email(
            message, relay=RelaySettings(port=port), envelope_from="bounces@example.com"
        )
    (envelope,) = received
    assert envelope.mail_from == "bounces@example.com"
    assert envelope.rcpt_tos == ("ann@customer.example",)
    parsed = parse_email(envelope.data)
    assert parsed.subject == "Re: Order 42"
    assert parsed.message_id == "cb.tok.n1@bridge.example.com"
    assert parsed.in_reply_to == "CAF1@mail.gmail.com"
    assert parsed.references == ("root@a.example", "CAF1@mail.gmail.com")
    assert (parsed.from_addr, parsed.from_name) == ("support@example.com", "Support Désk")
    assert parsed.text.replace("\r\n", "\n") == message.get_body(("plain",)).get_content()
    assert parsed.html.strip() == "<p>Your parcel</p>"
    sent_names = [k.lower() for k in message]
    assert [k.lower() for k, _ in _headers(envelope.data)] == sent_names


def _headers(data: bytes) -> list[tuple[str, str]]:
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    return [
        (line.split(":", 1)[0], line)
        for line in head.split("\r\n")
        if line and line[0] not in " \t"
    ]


async def test_envelope_from_defaults_to_from_and_bcc_is_not_sent() -> None:
    received: list[IngestEnvelope] = []

    async def on_message(envelope: IngestEnvelope) -> None:
        received.append(envelope)

    message = reply()
    message["Bcc"] = "audit@example.com"
    async with sink(on_message) as port:
        await send_email(message, relay=RelaySettings(port=port))
    (envelope,) = received
    assert envelope.mail_from == "support@example.com"
    assert envelope.rcpt_tos == ("ann@customer.example", "audit@example.com")
    assert b"audit@example.com" not in envelope.data
    assert "Bcc" in message  # the caller's message is left as it was


async def test_550_is_permanent_with_the_code_and_text() -> None:
    async def on_message(envelope: IngestEnvelope) -> None:
        raise AssertionError("not reached")

    async with sink(on_message, accepts=lambda _: False) as port:
        with pytest.raises(PermanentError) as caught:
            await send_email(reply(), relay=RelaySettings(port=port))
    assert " 550 " in str(caught.value) and "no relay" in str(caught.value)
    assert "RCPT TO ann@customer.example" in str(caught.value)


async def test_554_after_data_is_permanent() -> None:
    async def on_message(envelope: IngestEnvelope) -> None:
        raise PermanentError("content rejected")

    async with sink(on_message) as port:
        with pytest.raises(PermanentError, match=r"554 5\.6\.0 content rejected to DATA"):
            await send_email(reply(), relay=RelaySettings(port=port))


async def test_451_is_transient_not_ambiguous() -> None:
    async def on_message(envelope: IngestEnvelope) -> None:
        raise RuntimeError("disk full")

    async with sink(on_message) as port:
        with pytest.raises(TransientError, match="451") as caught:
            await send_email(reply(), relay=RelaySettings(port=port))
    assert not isinstance(caught.value, AmbiguousWriteError)


async def test_timeout_after_data_is_ambiguous() -> None:
    stuck = anyio.Event()

    async def on_message(envelope: IngestEnvelope) -> None:
        await stuck.wait()  # never answers; the client gives up first

    async with sink(on_message) as port:
        with pytest.raises(AmbiguousWriteError, match="after the message data was sent"):
            await send_email(reply(), relay=RelaySettings(port=port, timeout=0.5))
        stuck.set()


async def test_connection_refused_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientError, match="connect") as caught:
        await send_email(reply(), relay=RelaySettings(port=port, timeout=5))
    assert not isinstance(caught.value, AmbiguousWriteError)


async def test_starttls_and_login(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, tmp_path / "key.pem")
    received: list[IngestEnvelope] = []

    async def on_message(envelope: IngestEnvelope) -> None:
        received.append(envelope)

    password = Secret("relay-pw-123")
    good = RelaySettings(tls="starttls", ca_file=str(cert), username="bridge", password=password)
    checker = password_checker("bridge", password)
    async with sink(
        on_message, tls_context=server_ctx, require_starttls=True, authenticator=checker
    ) as port:
        bad = dataclasses.replace(good, port=port, password=Secret("wrong-pw-456"))
        with pytest.raises(PermanentError, match="535") as caught:
            await send_email(reply(), relay=bad)
        assert "wrong-pw-456" not in str(caught.value)
        with pytest.raises(TransientError, match="connect"):
            await send_email(reply(), relay=RelaySettings(port=port, tls="starttls", timeout=5))
        plain = RelaySettings(port=port, tls="none")
        with pytest.raises(PermanentError, match="530"):
            await send_email(reply(), relay=plain)
        await send_email(reply(), relay=dataclasses.replace(good, port=port))
    assert len(received) == 1


async def test_implicit_tls_against_a_plain_server_is_transient() -> None:
    async def on_message(envelope: IngestEnvelope) -> None:
        raise AssertionError("not reached")

    async with sink(on_message) as port:
        with pytest.raises(TransientError):
            await send_email(reply(), relay=RelaySettings(port=port, tls="tls", timeout=5))
