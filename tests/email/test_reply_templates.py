"""The email reply's bodies: the plugin's own templates (``casebridge_email/templates``),
rendered through the bridge's one chain in the core's sandbox, and overridden by the TOML's
``[templates] dir`` by the same path."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from casebridge.bridge import Bridge
from casebridge.model import (
    Attachment,
    Author,
    Contact,
    DeliveryState,
    Direction,
    Message,
    RawInbound,
    Session,
    SessionStatus,
    derived_id,
)
from casebridge.replies import outbound_message
from casebridge.templates import TemplateError, Templates
from casebridge_email.envelope import envelope_fields
from casebridge_email.reply_bodies import TEMPLATES, author_label, reply_bodies
from hypothesis import given, settings
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser as LexborParser
from support.bridges import install_jsonl, only_session, settle
from support.bridges import write_config as write_bridge_config
from support.html_structure import Structure
from test_email_plugin_support import SUPPORT, customer_mail, free_port, sink_server

WHEN = datetime(2030, 5, 6, 7, 8, tzinfo=UTC)
NASTY = ["<script>alert(1)</script>", "{{ 7*7 }}", "{% raw %}", "\r\n", "\r", "\n",
         "<img src=x onerror=alert(1)>", "</div></body>", "<!--", "&amp;", "é漢字🙂",
         "\u2028", "\x00", "<a href='javascript:x'>"]
customer_strings = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(st.sampled_from(NASTY), st.text(max_size=8)), max_size=8).map("".join),
)
SESSION = Session(
    id="s1", channel="email", status=SessionStatus.HANDED_OFF, subject="Printer on fire",
    contact=Contact(id="c1", name="Jane Roe", emails=("jane@example.com",)), created_at=WHEN,
)


def reply(text: str = "We're on it.", **changes: object) -> Message:
    base = Message(
        id="m1", channel="email", direction=Direction.OUTBOUND, author=Author.AGENT,
        external_id="", sender="support@example.test", recipients=("jane@example.com",),
        text=text, sender_name="Rita Rep", sent_at=WHEN, received_at=WHEN,
        attachments=(Attachment(name="", content_type="", size=3, sha256="a"),),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def parse(html: str) -> Structure:
    parser = Structure()
    parser.feed(html)
    parser.close()
    return parser


def lines(text: str) -> str:
    return re.sub(r"\r\n|\r", "\n", text)


@pytest.fixture(scope="module")
def templates() -> Templates:
    # The chain the runner builds: no override, the plugin's folder, the core's templates.
    chain = Templates()
    chain.add_folder(TEMPLATES)
    return chain


@settings(max_examples=100)
@given(text=customer_strings)
def test_reply_bodies_keep_text_and_never_inject(templates: Templates, text: str) -> None:
    message = reply(text, html="")
    body_text, body_html = reply_bodies(templates.render, message, SESSION)
    assert text in body_text
    _, baseline = reply_bodies(templates.render, replace(message, text="x"), SESSION)
    assert parse(body_html).elements == parse(baseline).elements
    tree = LexborParser(body_html)
    assert tree.css("script") == []
    for node in tree.css("*"):
        assert not any(name.lower().startswith("on") for name in node.attributes)
    assert lines(text) in lines("".join(parse(body_html).text))


def test_reply_html_is_sanitized(templates: Templates) -> None:
    message = reply(html='<p onclick="steal()">We\'re <b>on</b> it.<script>bad()</script>'
                         '<a href="javascript:x()">x</a></p>')
    body_text, body_html = reply_bodies(templates.render, message, SESSION)
    assert body_text.strip() == "We're on it."
    tree = LexborParser(body_html)
    assert tree.css("script") == []
    assert tree.css_first("b").text() == "on"
    assert "onclick" not in body_html
    assert "javascript:" not in body_html


def test_override_templates_see_who_wrote_and_what_is_attached(tmp_path: Path) -> None:
    folder = tmp_path / "email"
    folder.mkdir()
    (folder / "reply.txt.j2").write_text(
        "{{ author_label }}: {{ message.text }}"
        "{% for a in attachments %} [{{ a.name }} {{ a.content_type }}]{% endfor %}")
    chain = Templates(tmp_path)
    chain.add_folder(TEMPLATES)
    text, html = reply_bodies(chain.render, reply("Done."), SESSION)
    assert text == "Rita Rep (agent): Done. [(unnamed) application/octet-stream]"
    assert "<div>Done.</div>" in html  # not overridden: the plugin's own


def test_author_labels() -> None:
    assert author_label(reply(sender_name="")) == "Agent"
    assert author_label(reply(author=Author.ASSISTANT)) == "Assistant"
    assert author_label(reply(author=Author.SYSTEM)) == "casebridge"


def test_shipped_reply_templates_are_strict_and_missing_ones_are_named(
    templates: Templates,
) -> None:
    with pytest.raises(TemplateError, match="is undefined"):
        templates.render("email/reply.txt.j2")
    with pytest.raises(TemplateError,
                       match=r"no template email/reply\.txt\.j2 in the packaged templates"):
        reply_bodies(Templates().render, reply(), SESSION)


def test_reply_templates_are_package_data_of_the_plugin() -> None:
    shipped = {p.relative_to(TEMPLATES).as_posix() for p in TEMPLATES.rglob("*.j2")}
    assert {"email/reply.txt.j2", "email/reply.html.j2"} <= shipped
    import casebridge

    core = Path(casebridge.__file__).parent / "templates"
    assert not (core / "email").exists()  # the core renders no e-mail of its own


async def test_an_override_in_the_toml_folder_is_what_the_customer_gets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    override = tmp_path / "mytemplates" / "email"
    override.mkdir(parents=True)
    (override / "reply.txt.j2").write_text("Dear customer,\n\n{{ message.text }}\n-- ACME")
    install_jsonl(monkeypatch, tmp_path)
    email = {"listen_host": "127.0.0.1", "listen_port": free_port(),
             "support_addresses": [SUPPORT]}
    async with sink_server() as sink:
        email["relay"] = {"host": "127.0.0.1", "port": sink.port, "timeout": 5}
        path = write_bridge_config(tmp_path, bridge={"channels": ["email"]},
                                   plugins={"email": email}, templates={"dir": "mytemplates"})
        bridge = Bridge.from_config(path)
        await bridge.open()
        try:
            await bridge.receive(RawInbound(
                channel="email", payload=customer_mail("Hello", msgid="<t1@customer.example>"),
                sender="ann@customer.example",
                fields=envelope_fields("ann@customer.example", (SUPPORT,))))
            await settle(bridge)
            session = await only_session(bridge)
            message = outbound_message(
                session, recipient=await bridge.pipeline.replies.reply_address(session),
                message_id=derived_id("test-reply", "t1"), author=Author.AGENT,
                text="Your printer is fixed.")
            await bridge.store.add_message(message)
            transcript = await bridge.store.transcript(session.id)
            delivery = await bridge.hooks.deliver_reply("email", session, message, transcript)
        finally:
            await bridge.close()
    assert delivery.state is DeliveryState.SENT
    [(_, sent)] = sink.received
    text = sent.get_body(("plain",)).get_content()
    html = sent.get_body(("html",)).get_content()
    assert lines(text).strip() == "Dear customer,\n\nYour printer is fixed.\n-- ACME"
    assert "<div>Your printer is fixed.</div>" in html  # the plugin's own HTML part
