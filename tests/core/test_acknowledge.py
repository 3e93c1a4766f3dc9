"""The optional acknowledgement (``[bridge] acknowledge``): off by default; when on, one
message per new session, on its channel, through the same delivery path as every reply."""

from __future__ import annotations

from pathlib import Path

import pytest
from casebridge.bridge import Bridge
from casebridge.model import Author, Contact, Direction, Message, Session, SessionStatus
from casebridge.templates import Templates
from hypothesis import given, settings
from hypothesis import strategies as st
from support.bridges import inbound, install_jsonl, jsonl_records, settle, write_config
from support.plugins import LoopChannel

THANKS = "Thank you for your message: we have received it"


async def bridge_with(tmp_path: Path, monkeypatch, **bridge_section) -> tuple[Bridge, LoopChannel]:
    install_jsonl(monkeypatch, tmp_path)
    path = write_config(tmp_path, bridge=bridge_section)
    loop = LoopChannel()
    bridge = Bridge.from_config(path, plugins={"loop": loop})
    await bridge.open()
    return bridge, loop


async def test_off_by_default_nothing_is_sent(tmp_path, monkeypatch) -> None:
    bridge, loop = await bridge_with(tmp_path, monkeypatch)
    try:
        await bridge.receive(inbound("My printer jams", msg_id="m1"))
        await settle(bridge)
        assert loop.sent == []
        assert [
            m.author
            for m in await bridge.store.transcript((await bridge.store.list_sessions())[0].id)
        ] == [Author.CUSTOMER]
    finally:
        await bridge.close()


async def test_one_acknowledgement_per_new_session(tmp_path, monkeypatch) -> None:
    bridge, loop = await bridge_with(tmp_path, monkeypatch, acknowledge=True)
    try:
        await bridge.receive(inbound("My printer jams", msg_id="m1"))
        await settle(bridge)
        await bridge.receive(inbound("Still jammed", msg_id="m2"))
        await bridge.receive(inbound("Mine too", msg_id="m3", sender="bo@example.com", name="Bo"))
        await settle(bridge)
        assert [(m.recipients, m.author) for m in loop.sent] == [
            (("ann@example.com",), Author.SYSTEM),
            (("bo@example.com",), Author.SYSTEM),
        ]
        first = loop.sent[0]
        assert first.text.startswith("Hello Ann Example,") and THANKS in first.text
        assert first.channel == "loop" and first.direction is Direction.OUTBOUND
        # It is part of the conversation, as every reply is.
        transcript = await bridge.store.transcript(first.session_id)
        assert [m.author for m in transcript] == [Author.CUSTOMER, Author.SYSTEM, Author.CUSTOMER]
        # The first inbound job re-run (a crash before it was marked done) asks again for
        # the same acknowledgement, which the store does not queue twice.
        done = await bridge.store.list_jobs("done", limit=100)
        opening = next(j for j in done if j.key == f"inbound:{transcript[0].id}")
        again = await bridge.pipeline.handlers["inbound"](opening)
        assert [j.key for j in again if j.kind == "ack"] == [f"ack:{first.session_id}"]
        later = next(j for j in done if j.key == f"inbound:{transcript[2].id}")
        assert [j for j in await bridge.pipeline.handlers["inbound"](later)
                if j.kind == "ack"] == []
        await bridge.enqueue(*again)
        await settle(bridge)
        assert len(loop.sent) == 2
    finally:
        await bridge.close()


async def test_acknowledged_then_handed_off_the_case_shows_it(tmp_path, monkeypatch) -> None:
    bridge, loop = await bridge_with(tmp_path, monkeypatch, acknowledge=True)
    try:
        await bridge.receive(inbound("I want to speak to a person", msg_id="m1"))
        await settle(bridge)
        [ack] = loop.sent
        assert THANKS in ack.text
        session = (await bridge.store.list_sessions())[0]
        assert session.status is SessionStatus.HANDED_OFF
        activities = jsonl_records(bridge, "activity")
        assert len(activities) == 2 and THANKS in str(activities[1])
    finally:
        await bridge.close()


async def test_a_channel_template_and_an_override_folder_are_used(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "mytemplates" / "acknowledge"
    folder.mkdir(parents=True)
    (folder / "loop.txt.j2").write_text("Got it, {{ contact_name }} ({{ channel_label }}).\n")
    install_jsonl(monkeypatch, tmp_path)
    path = write_config(tmp_path, bridge={"acknowledge": True}, templates={"dir": "mytemplates"})
    loop = LoopChannel()
    bridge = Bridge.from_config(path, plugins={"loop": loop})
    await bridge.open()
    try:
        await bridge.receive(inbound("hello", msg_id="m1"))
        await settle(bridge)
        assert [m.text for m in loop.sent] == ["Got it, Ann Example (loop)."]
    finally:
        await bridge.close()


def test_acknowledge_must_be_true_or_false(tmp_path, monkeypatch) -> None:
    install_jsonl(monkeypatch, tmp_path)
    path = write_config(tmp_path, bridge={"acknowledge": "yes"})
    with pytest.raises(Exception, match=r"\[bridge\] acknowledge: expected true or false"):
        Bridge.from_config(path, plugins={"loop": LoopChannel()})


TEMPLATES = Templates()


# Rendering is quick, but a machine shared with other test runs can stall any example.
@settings(deadline=None)
@given(st.text(max_size=80), st.sampled_from(["email", "sms", "loop"]))
def test_the_acknowledgement_names_the_customer_literally(name: str, channel: str) -> None:
    contact = Contact("c1", name, ("ann@example.com",))
    session = Session("s1", channel, contact, SessionStatus.ASSISTANT)
    message = Message(
        "m1",
        channel,
        Direction.INBOUND,
        Author.CUSTOMER,
        "x1",
        "ann@example.com",
        ("desk",),
        "hi {{ 7*7 }}",
    )
    text = TEMPLATES.acknowledgement(session, message)
    assert text == text.strip() and text
    assert "we have" in text
    if channel != "sms" and name:
        # Customer text is data, never template: "{{ 7*7 }}" in a name stays as written.
        assert text.startswith(f"Hello {name},")
    assert "49" not in text.replace(name, "")
