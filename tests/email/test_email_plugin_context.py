"""The email plugin sees the runner only through its PluginContext: no hook of it needs the
Bridge, one guard says when it was never configured, and its name is the one the TOML gives
it (state, channel, services), so a second instance under another name is its own channel."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from casebridge.bridge import Bridge
from casebridge.model import Author, DeliveryState, RawInbound, derived_id
from casebridge.plugin import PermanentError
from casebridge.replies import outbound_message
from casebridge_email.envelope import envelope_fields
from casebridge_email.plugin import EmailPlugin
from support.bridges import install_jsonl, only_session, settle
from support.bridges import write_config as write_bridge_config
from test_email_plugin_support import SUPPORT, customer_mail, free_port, sink_server


def test_no_hook_of_the_email_plugin_takes_the_bridge() -> None:
    hooks = {name: fn for name, fn in inspect.getmembers(EmailPlugin, inspect.isfunction)
             if hasattr(fn, "casebridge_impl")}
    assert {"configure", "services", "http_routes", "addresses", "check", "ingest",
            "deliver_reply"} <= set(hooks)
    taking = {name: list(inspect.signature(fn).parameters)[1:] for name, fn in hooks.items()}
    assert [name for name, args in taking.items() if "bridge" in args] == []
    assert taking["configure"] == ["context"]


async def test_an_unconfigured_email_plugin_says_so() -> None:
    plugin = EmailPlugin()
    with pytest.raises(PermanentError, match="email plugin is not configured"):
        plugin.services()
    with pytest.raises(PermanentError, match="not configured"):
        await plugin.check()


async def test_a_second_instance_answers_to_its_own_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_jsonl(monkeypatch, tmp_path)
    async with sink_server() as sink:
        settings = {"listen_host": "127.0.0.1", "listen_port": free_port(),
                    "support_addresses": [SUPPORT],
                    "relay": {"host": "127.0.0.1", "port": sink.port, "timeout": 5}}
        path = write_bridge_config(tmp_path, bridge={"channels": ["billing-mail"]},
                                   plugins={"billing-mail": settings})
        bridge = Bridge.from_config(path, plugins={"billing-mail": EmailPlugin()})
        await bridge.open()
        try:
            assert bridge.plugin_names().count("email") == 0
            services = bridge.hooks.services()
            assert [s.name for s in services] == ["billing-mail SMTP server"]
            await bridge.receive(RawInbound(
                channel="billing-mail", sender="ann@customer.example",
                fields=envelope_fields("ann@customer.example", (SUPPORT,)),
                payload=customer_mail("Invoice wrong", msgid="<b1@customer.example>")))
            await settle(bridge)
            session = await only_session(bridge)
            assert session.channel == "billing-mail"
            message = outbound_message(
                session, recipient=await bridge.pipeline.replies.reply_address(session),
                message_id=derived_id("test-reply", "b1"), author=Author.AGENT, text="Fixed.")
            await bridge.store.add_message(message)
            transcript = await bridge.store.transcript(session.id)
            delivery = await bridge.hooks.deliver_reply("billing-mail", session, message,
                                                        transcript)
            assert delivery.state is DeliveryState.SENT
            # Its state is under its own name, and the reply threads on the customer's mail.
            key = f"msgid:{delivery.external_id}"
            assert await bridge.store.get_state("billing-mail", key) == message.id
            assert await bridge.store.get_state("email", key) is None
            result = await bridge.hooks.check("billing-mail")
            assert result.plugin == "billing-mail" and result.ok
        finally:
            await bridge.close()
    [(_, mail)] = sink.received
    assert mail["In-Reply-To"] == "<b1@customer.example>"
