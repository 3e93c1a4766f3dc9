"""The email plugin end to end through the core: a real runner (SQLite, outbox, HTTP) with the
email plugin loaded by its entry point, smtplib sending customer mail to its SMTP server on
a loopback port, and an aiosmtpd sink on another port standing in for the relay."""

from __future__ import annotations

import hashlib
import json
import smtplib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from casebridge.bridge import Bridge
from casebridge.jobs import HandoffJob
from casebridge.model import Author, SessionStatus
from casebridge_email.tokens import make_token, token_from_address, token_from_message_id
from support.bridges import HOOK_TOKEN, install_jsonl, jsonl_records, only_session, settle
from support.bridges import write_config as write_bridge_config
from support.plugins import ScriptedAssistant
from test_email_plugin_support import (
    CUSTOMER,
    SUPPORT,
    Sink,
    customer_mail,
    free_port,
    sink_server,
    wire,
)


@dataclass
class World:
    bridge: Bridge
    sink: Sink
    smtp_port: int
    http: httpx.AsyncClient

    async def send(self, data: bytes, *, to: tuple[str, ...] = (SUPPORT,),
                   mail_from: str = CUSTOMER) -> dict[str, Any]:
        """Deliver ``data`` to the bridge's SMTP server with smtplib; the refused recipients."""

        def deliver() -> dict[str, Any]:
            with smtplib.SMTP("127.0.0.1", self.smtp_port, local_hostname="mx.test",
                              timeout=30) as smtp:
                return smtp.sendmail(mail_from, list(to), data)

        return await anyio.to_thread.run_sync(deliver)

    async def agent_reply(self, case_id: str, activity_id: str, text: str) -> None:
        body = {"event_type": "new_activity", "caseId": case_id, "activityId": activity_id,
                "text": text, "author": "Rita Rep"}
        response = await self.http.post(f"/webhooks/jsonl/{HOOK_TOKEN}", content=json.dumps(body))
        assert response.status_code == 200, response.text
        await settle(self.bridge)

    async def hand_off(self, session_id: str) -> None:
        await self.bridge.enqueue(HandoffJob(session_id, "test handoff", "test").to_new_job())
        await settle(self.bridge)


def email_config(smtp_port: int, relay: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"listen_host": "127.0.0.1", "listen_port": smtp_port,
                              "support_addresses": [SUPPORT], **extra}
    if relay is not None:
        config["relay"] = relay
    return config


@asynccontextmanager
async def running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, assistant: bool = False,
    **email_settings: Any,
) -> AsyncIterator[World]:
    install_jsonl(monkeypatch, tmp_path)
    smtp_port, http_port = free_port(), free_port()
    async with sink_server() as sink:
        relay = {"host": "127.0.0.1", "port": sink.port, "timeout": 10}
        path = write_bridge_config(
            tmp_path,
            bridge={"channels": ["email"], **({"plugins": ["assistant"]} if assistant else {})},
            http={"host": "127.0.0.1", "port": http_port},
            plugins={"email": email_config(smtp_port, relay, **email_settings)},
        )
        plugins = {"assistant": ScriptedAssistant()} if assistant else {}
        bridge = Bridge.from_config(path, plugins=plugins)
        async with (
            anyio.create_task_group() as tg,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as client,
        ):
            await tg.start(bridge.run)
            try:
                yield World(bridge, sink, smtp_port, client)
            finally:
                tg.cancel_scope.cancel()


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    async with running(tmp_path, monkeypatch) as w:
        yield w


REPLY_WITH_QUOTE = """My printer still prints blank pages after the new cartridge.

On Mon, 3 Jun 2024 at 09:00, Support <support@example.com> wrote:
> Did you try a new cartridge?
> Regards, Support
"""


async def test_hook_ingest_email_smtp_mail_becomes_a_trimmed_session_with_attachments(
    world: World,
) -> None:
    pdf = b"%PDF-1.4 invoice " * 50
    refused = await world.send(customer_mail(REPLY_WITH_QUOTE, msgid="<c1@customer.example>",
                                             attachment=("invoice.pdf", pdf)))
    assert refused == {}
    await settle(world.bridge)
    session = await only_session(world.bridge)
    assert session.channel == "email" and session.channel_address == SUPPORT
    assert session.contact.emails == (CUSTOMER,) and session.contact.name == "Ann Example"
    [message] = await world.bridge.store.transcript(session.id)
    assert message.text == "My printer still prints blank pages after the new cartridge."
    assert "> Did you try a new cartridge?" in message.original_text
    assert message.external_id == "c1@customer.example"
    assert message.subject == "Printer prints blank pages"
    assert message.sender == CUSTOMER and message.sender_name == "Ann Example"
    [attachment] = message.attachments
    assert attachment.name == "invoice.pdf" and attachment.size == len(pdf)
    assert attachment.sha256 == hashlib.sha256(pdf).hexdigest() and not attachment.refused
    stored = world.bridge.data_dir / "attachments" / attachment.location
    assert stored.read_bytes() == pdf


async def test_hook_services_email_smtp_server_refuses_foreign_recipients(world: World) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        await world.send(customer_mail("hi", msgid="<r1@customer.example>"),
                         to=("someone@elsewhere.example",))
    [(code, _)] = refused.value.recipients.values()
    assert code == 550
    # A plus tag on a support address is ours; a mixed envelope keeps only ours.
    answer = await world.send(customer_mail("hi", msgid="<r2@customer.example>"),
                              to=("support+x@example.com", "other@elsewhere.example"))
    assert answer["other@elsewhere.example"][0] == 550
    await settle(world.bridge)
    session = await only_session(world.bridge)
    assert len(await world.bridge.store.transcript(session.id)) == 1


async def test_hook_ingest_email_loops_are_dropped_with_reasons(world: World) -> None:
    auto = customer_mail("I am out of office", msgid="<a1@customer.example>",
                         extra={"Auto-Submitted": "auto-replied"})
    bounce = EmailMessage()
    bounce["From"] = "Mail Delivery System <mailer-daemon@customer.example>"
    bounce["To"] = SUPPORT
    bounce["Subject"] = "Undelivered Mail Returned to Sender"
    bounce["Message-ID"] = "<b1@customer.example>"
    bounce.set_content("This is the mail system.")
    bounce.add_attachment("Reporting-MTA: dns; mx.customer.example\n",
                          subtype="delivery-status")
    bounce.replace_header("Content-Type", bounce["Content-Type"].replace("mixed", "report"))
    daemon = customer_mail("Delivery failed", msgid="<d1@customer.example>",
                           sender="MAILER-DAEMON@customer.example")
    for data in (auto, wire(bounce), daemon):
        assert await world.send(data) == {}
    null_sender = customer_mail("Your message could not be delivered", msgid="<n1@c.example>")
    assert await world.send(null_sender, mail_from="") == {}
    await settle(world.bridge)
    assert await world.bridge.store.list_sessions() == []
    reasons = sorted(d.reason for d in await world.bridge.store.list_dropped(10))
    assert len(reasons) == 4
    assert reasons[0].startswith("auto-submitted message")
    assert reasons[1].startswith("delivery status notification")
    assert reasons[2].startswith("null sender")
    assert reasons[3].startswith("sent by a machine address")


async def test_hook_ingest_email_same_message_id_twice_is_one_message(world: World) -> None:
    data = customer_mail("Hello twice", msgid="<twice@customer.example>")
    assert await world.send(data) == {}
    assert await world.send(data) == {}
    await settle(world.bridge)
    session = await only_session(world.bridge)
    assert [m.text for m in await world.bridge.store.transcript(session.id)] == ["Hello twice"]


async def test_hook_deliver_reply_email_agent_reply_is_threaded_and_the_answer_joins(
    world: World,
) -> None:
    bridge, sink = world.bridge, world.sink
    await world.send(customer_mail("My printer prints blank pages.",
                                   msgid="<first@customer.example>",
                                   references="<older@customer.example>"))
    await settle(bridge)
    session = await only_session(bridge)
    await world.hand_off(session.id)
    session = await only_session(bridge)
    assert session.case is not None

    await world.agent_reply(session.case.case_id, "rep-1",
                            "Please try a new cartridge.\r\nBcc: evil@attacker.example\r\n\r\nRita")
    [(envelope, reply)] = sink.received
    assert envelope.rcpt_tos == [CUSTOMER] and envelope.mail_from == SUPPORT
    assert reply["In-Reply-To"] == "<first@customer.example>"
    assert reply["References"].split() == ["<older@customer.example>",
                                           "<first@customer.example>"]
    assert reply["Subject"] == "Re: Printer prints blank pages"
    assert reply["From"].addresses[0].addr_spec == SUPPORT
    assert reply["To"].addresses[0].addr_spec == CUSTOMER
    assert "Auto-Submitted" not in reply and "Bcc" not in reply
    assert "Bcc: evil@attacker.example" in reply.get_body(("plain",)).get_content()
    token = make_token(session.id, bridge.pm.get_plugin("email")._token_secret())
    assert token_from_message_id(reply["Message-ID"]) == token
    assert token_from_address(reply["Reply-To"].addresses[0].addr_spec) == token

    # The same reply delivered again (the CRM calls twice) is not sent twice.
    await world.agent_reply(session.case.case_id, "rep-1", "Please try a new cartridge.")
    assert len(sink.received) == 1

    # The customer answers our mail: it joins the session and reaches the case.
    answer = customer_mail(
        "Tried it, still blank.\n\nOn Tue, Support wrote:\n> Please try a new cartridge.\n",
        msgid="<second@customer.example>", subject="Re: Printer prints blank pages",
        in_reply_to=reply["Message-ID"],
        references=f"<first@customer.example> {reply['Message-ID']}",
    )
    assert await world.send(answer) == {}
    await settle(bridge)
    transcript = await bridge.store.transcript((await only_session(bridge)).id)
    assert [m.author for m in transcript] == [Author.CUSTOMER, Author.AGENT, Author.CUSTOMER]
    assert transcript[-1].text == "Tried it, still blank."
    assert "Tried it, still blank." in jsonl_records(bridge, "activity")[-1]["body"]


async def test_hook_deliver_reply_email_relay_refusal_is_recorded_on_the_case(
    world: World,
) -> None:
    bridge, sink = world.bridge, world.sink
    await world.send(customer_mail("Help", msgid="<bob1@customer.example>",
                                   sender="bob@customer.example"), mail_from="bob@customer.example")
    await settle(bridge)
    session = await only_session(bridge)
    await world.hand_off(session.id)
    session = await only_session(bridge)
    sink.refuse.add("bob@customer.example")
    await world.agent_reply(session.case.case_id, "rep-2", "Hello Bob")
    assert sink.received == []
    transcript = await bridge.store.transcript(session.id)
    assert transcript[-1].author is Author.SYSTEM
    assert "not delivered" in transcript[-1].text and "550" in transcript[-1].text
    last = jsonl_records(bridge, "activity")[-1]
    assert last["author"] == "system" and "mailbox unavailable" in last["body"]


async def test_hook_deliver_reply_email_assistant_answers_are_marked_auto_submitted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(tmp_path, monkeypatch, assistant=True) as w:
        await w.send(customer_mail("Where is my order?", msgid="<o1@customer.example>"))
        await settle(w.bridge)
        [(_, answer)] = w.sink.received
        assert answer["Auto-Submitted"] == "auto-replied"
        assert answer.get_body(("plain",)).get_content().strip() == "Answer 1 for email"
        assert answer["In-Reply-To"] == "<o1@customer.example>"
        session = await only_session(w.bridge)
        assert session.status is SessionStatus.ASSISTANT


async def test_hook_services_email_smtp_server_enforces_size_and_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {"max_message_bytes": 4000, "max_attachment_bytes": 2000, "require_auth": True,
                "auth_username": "forwarder", "auth_password": "forwarder-pw"}
    async with running(tmp_path, monkeypatch, **settings) as w:
        small = customer_mail("Hello", msgid="<s1@customer.example>")
        large = customer_mail("x" * 5000, msgid="<l1@customer.example>")

        def deliver(data: bytes, password: str | None) -> int:
            with smtplib.SMTP("127.0.0.1", w.smtp_port, timeout=30) as smtp:
                try:
                    if password is not None:
                        smtp.login("forwarder", password)
                    smtp.sendmail(CUSTOMER, [SUPPORT], data)
                except smtplib.SMTPResponseException as exc:
                    return exc.smtp_code
                except smtplib.SMTPRecipientsRefused as exc:
                    return next(iter(exc.recipients.values()))[0]
            return 250

        async def attempt(data: bytes, password: str | None) -> int:
            return await anyio.to_thread.run_sync(deliver, data, password)

        assert await attempt(small, None) == 530
        assert await attempt(small, "wrong") == 535
        assert await attempt(large, "forwarder-pw") == 552
        assert await attempt(small, "forwarder-pw") == 250
        await settle(w.bridge)
        session = await only_session(w.bridge)
        assert [m.text for m in await w.bridge.store.transcript(session.id)] == ["Hello"]
