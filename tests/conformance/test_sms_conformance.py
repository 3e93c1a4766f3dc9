"""The SMS plugin passes the channel conformance suite against its sandbox provider: signed
webhook calls in, the provider's REST API out, opt-outs honoured."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from casebridge.model import RawInbound
from casebridge.testing import ChannelConformance, ChannelUnderTest, Harness
from casebridge_sms.signature import compute_signature
from casebridge_sms.webhook import INBOUND_PATH
from support.bridges import install_jsonl

OUR = "+15005550006"


class SmsProbe:
    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.sandbox = harness.bridge.pm.get_plugin("sms").sandbox
        self.token = self.sandbox.auth_token.reveal()

    def customer(self, n: int) -> str:
        return f"+1415555{n:04d}"

    def _form(self, sender: str, text: str, external_id: str) -> dict[str, str]:
        sid = "SM" + uuid.uuid5(uuid.NAMESPACE_URL, external_id).hex
        return {"MessageSid": sid, "SmsSid": sid, "AccountSid": self.sandbox.account_sid,
                "From": sender, "To": OUR, "Body": text, "NumMedia": "0"}

    def inbound(self, sender: str, text: str, external_id: str) -> RawInbound:
        # As the webhook builds it.
        form = self._form(sender, text, external_id)
        return RawInbound(channel="sms", fields=form, sender=sender,
                          transport_id=form["MessageSid"])

    def dropped(self, sender: str) -> list[tuple[RawInbound, str]]:
        return [(self.inbound(sender, "STOP", "stop-1"), "opt-out"),
                (self.inbound(sender, "HELP", "help-1"), "help")]

    def garbage(self) -> list[RawInbound]:
        return [RawInbound(channel="sms", fields=fields) for fields in (
            {}, {"MessageSid": "SMx", "From": "not a number", "To": OUR, "Body": "hi"},
            {"MessageSid": "SMy", "From": "+1", "To": OUR, "Body": "\x00" * 10},
        )]

    async def send_inbound(self, sender: str, text: str, external_id: str) -> None:
        form = self._form(sender, text, external_id)
        signature = compute_signature(self.token, self.harness.bridge.public_url + INBOUND_PATH,
                                      form)
        answer = await self.harness.http.post(INBOUND_PATH, data=form,
                                              headers={"X-Twilio-Signature": signature})
        assert answer.status_code == 200, answer.text

    async def sent(self) -> list[tuple[str, str]]:
        return [(m["to"], m["body"]) for m in self.sandbox.messages]

    async def refuse(self, address: str) -> None:
        received = await self.harness.bridge.receive(self.inbound(address, "STOP", "refuse"))
        assert received.dropped


class TestSmsConformance(ChannelConformance):
    pass


@pytest.fixture
def channel_under_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ChannelUnderTest:
    install_jsonl(monkeypatch, tmp_path / "dist")
    return ChannelUnderTest(
        "sms", {"provider": "sandbox", "numbers": [OUR]}, SmsProbe,
        config={"bridge": {"crm": "jsonl"},
                "plugins": {"jsonl": {"path": "cases.jsonl", "webhook_token": "t"}}},
    )
