"""The email plugin passes the channel conformance suite: its SMTP server on a loopback
port, a relay sink on another, and the example JSON-lines CRM behind the bridge."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import pytest
from casebridge.model import RawInbound
from casebridge.testing import ChannelConformance, ChannelUnderTest, Harness
from casebridge_email.smtp_server import IngestEnvelope, raw_inbound
from support.bridges import install_jsonl

sys.path.insert(0, str(Path(__file__).parents[1] / "email"))
from test_email_plugin_support import SUPPORT, Sink, customer_mail, free_port, sink_server


def smtp_raw(data: bytes, mail_from: str) -> RawInbound:
    """What the SMTP server hands the plugin for ``data`` sent to the support address."""
    return raw_inbound(IngestEnvelope(mail_from, (SUPPORT,), data, "127.0.0.1:2525"), "email")


class EmailProbe:
    def __init__(self, harness: Harness, sink: Sink, port: int) -> None:
        self.sink, self.port = sink, port

    def customer(self, n: int) -> str:
        return f"customer{n}@customer.example"

    def _mail(self, sender: str, text: str, external_id: str, **headers: str) -> bytes:
        return customer_mail(text, msgid=f"<{external_id}@customer.example>", sender=sender,
                             extra=headers or None)

    def inbound(self, sender: str, text: str, external_id: str) -> RawInbound:
        return smtp_raw(self._mail(sender, text, external_id), sender)

    def dropped(self, sender: str) -> list[tuple[RawInbound, str]]:
        auto = self._mail(sender, "I am out of office.", "auto-1",
                          **{"Auto-Submitted": "auto-replied"})
        bounce = self._mail("mailer-daemon@customer.example", "Delivery failed.", "bounce-1")
        return [
            (smtp_raw(auto, sender), "auto"),
            (smtp_raw(bounce, ""), "bounce"),
        ]

    def garbage(self) -> list[RawInbound]:
        return [smtp_raw(data, "x@customer.example")
                for data in (b"", b"\x00\xff" * 50, b"Subject: =?utf-8?q?\r\n\r\n\xff",
                             b"From: <>\r\n\r\nno sender")]

    async def send_inbound(self, sender: str, text: str, external_id: str) -> None:
        await aiosmtplib.send(self._mail(sender, text, external_id), sender=sender,
                              recipients=[SUPPORT], hostname="127.0.0.1", port=self.port)

    async def sent(self) -> list[tuple[str, str]]:
        return [(to, msg.get_body(("plain",)).get_content())
                for envelope, msg in self.sink.received for to in envelope.rcpt_tos]

    async def refuse(self, address: str) -> None:
        self.sink.refuse.add(address.lower())


class TestEmailConformance(ChannelConformance):
    pass


@pytest.fixture
async def channel_under_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ChannelUnderTest]:
    install_jsonl(monkeypatch, tmp_path / "dist")
    port = free_port()
    async with sink_server() as sink:
        yield ChannelUnderTest(
            "email",
            {"listen_host": "127.0.0.1", "listen_port": port, "support_addresses": [SUPPORT],
             "relay": {"host": "127.0.0.1", "port": sink.port, "timeout": 5}},
            lambda harness: EmailProbe(harness, sink, port),
            config={"bridge": {"crm": "jsonl"},
                    "plugins": {"jsonl": {"path": "cases.jsonl", "webhook_token": "t"}}},
        )
