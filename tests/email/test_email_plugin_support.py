"""Shared by the email plugin tests: a relay sink on loopback and customer mail builders."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession

SUPPORT = "support@example.com"
CUSTOMER = "ann@customer.example"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Sink:
    """The relay: keeps what it accepts; answers 550 to recipients in ``refuse``."""

    port: int = 0
    received: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)

    async def handle_RCPT(
        self, server: SMTP, session: SmtpSession, envelope: Envelope, address: str,
        options: list[str],
    ) -> str:
        if address.lower() in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(
        self, server: SMTP, session: SmtpSession, envelope: Envelope
    ) -> str:
        data = envelope.original_content or b""
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append((envelope, parsed))
        return "250 OK"


@asynccontextmanager
async def sink_server() -> AsyncIterator[Sink]:
    sink = Sink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="relay.test", decode_data=False), "127.0.0.1", 0
    )
    sink.port = server.sockets[0].getsockname()[1]
    try:
        yield sink
    finally:
        server.close()
        await server.wait_closed()


def customer_mail(
    body: str, *, msgid: str, subject: str = "Printer prints blank pages",
    sender: str = CUSTOMER, to: str = SUPPORT, in_reply_to: str = "",
    references: str = "", extra: dict[str, str] | None = None,
    attachment: tuple[str, bytes] | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Ann Example <{sender}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = "Mon, 03 Jun 2024 10:00:00 +0000"
    msg["Message-ID"] = msgid
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    for name, value in (extra or {}).items():
        msg[name] = value
    msg.set_content(body)
    if attachment is not None:
        name, data = attachment
        msg.add_attachment(data, maintype="application", subtype="pdf", filename=name)
    return wire(msg)


def wire(msg: EmailMessage) -> bytes:
    # smtplib sends bytes as they are: SMTP needs CRLF line ends.
    return msg.as_bytes(policy=email.policy.SMTP)
