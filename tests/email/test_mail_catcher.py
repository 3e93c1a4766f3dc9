"""The embedded mail catcher: a real SMTP server on a loopback port that keeps what the bridge
sends (on disk, so it survives a restart) and pages that show it safely."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import anyio
import httpx
import pytest
from casebridge.config import ConfigError
from casebridge_email.catcher import CatcherStore, MailCatcher, describe, is_id, new_id
from casebridge_email.catcher_pages import catcher_routes
from casebridge_email.compose import compose_reply
from casebridge_email.settings import CatcherSettings
from casebridge_email.smtp_client import send_email
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from support.bridges import only_session
from test_email_plugin_hooks import agent_message, deliver, opened, receive
from test_email_plugin_support import SUPPORT, customer_mail, free_port

HOSTILE_HTML = (
    '<p onclick="steal()">Hello <b>Ann</b></p><script>alert("x")</script>'
    '<img src="https://tracker.example/p.gif"><a href="javascript:alert(1)">click</a>'
)


def threaded_reply(text: str = "We are on it.", html: str | None = HOSTILE_HTML) -> EmailMessage:
    return compose_reply(
        from_addr=SUPPORT,
        from_name="Support",
        to_addr="ann@customer.example",
        subject="Order 1234",
        text=text,
        html=html,
        in_reply_to="c1@customer.example",
        references=["c0@customer.example"],
        message_id="<r1.tok@example.com>",
        auto_submitted=False,
        reply_to="support+tok@example.com",
    )


async def test_catcher_keeps_mail_sent_over_smtp_and_after_a_restart(tmp_path: Path) -> None:
    settings_ = CatcherSettings(port=free_port())
    catcher = MailCatcher(settings_, tmp_path)
    async with anyio.create_task_group() as tg:
        await tg.start(catcher.run)
        await send_email(threaded_reply(), relay=settings_.as_relay())
        await send_email(threaded_reply("Second."), relay=settings_.as_relay())
        tg.cancel_scope.cancel()
    # A fresh store over the same folder (a restarted bridge) sees both, newest first.
    kept = CatcherStore(tmp_path / "mail-catcher", 10).all()
    assert len(kept) == 2
    assert kept[0].rcpt_tos == ("ann@customer.example",)
    assert describe(kept[0].data).text.strip() == "Second."
    view = describe(kept[1].data)
    assert dict(view.thread) == {
        "Message-ID": "<r1.tok@example.com>",
        "In-Reply-To": "<c1@customer.example>",
        "References": "<c0@customer.example> <c1@customer.example>",
    }


def test_catcher_drops_the_oldest_beyond_its_limit(tmp_path: Path) -> None:
    from casebridge_email.smtp_server import IngestEnvelope

    store = CatcherStore(tmp_path, max_messages=2)
    for n in range(3):
        store.keep(
            IngestEnvelope(
                "a@b.example", ("c@d.example",), f"Subject: {n}\r\n\r\nbody {n}\r\n".encode()
            )
        )
    assert [describe(m.data).subject for m in store.all()] == ["2", "1"]
    assert store.clear() == 2 and store.all() == []


async def test_catcher_pages_list_and_show_a_message_safely(tmp_path: Path) -> None:
    from casebridge_email.smtp_server import IngestEnvelope

    store = CatcherStore(tmp_path, 10)
    data = threaded_reply().as_bytes()
    mail = store.keep(IngestEnvelope(SUPPORT, ("ann@customer.example",), data))
    app = Starlette(routes=catcher_routes(store, "127.0.0.1:1025"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://catcher.test"
    ) as client:
        listing = await client.get("/mail")
        assert listing.status_code == 200 and f'href="/mail/{mail.id}"' in listing.text
        assert "Order 1234" in listing.text and "127.0.0.1:1025" in listing.text
        page = await client.get(f"/mail/{mail.id}")
        assert page.status_code == 200
        assert "&lt;c1@customer.example&gt;" in page.text  # In-Reply-To shown, escaped
        assert "We are on it." in page.text
        # The HTML part: sanitized, inside an iframe that may run nothing.
        assert '<iframe id="html" sandbox=""' in page.text
        assert "<script" not in page.text and "onclick" not in page.text
        assert "javascript:" not in page.text and "tracker.example" not in page.text
        assert "&lt;b&gt;Ann&lt;/b&gt;" in page.text  # escaped into srcdoc
        as_json = (await client.get("/mail/messages.json")).json()
        [summary] = as_json["messages"]
        assert summary["subject"] == "Re: Order 1234"
        assert summary["thread"]["In-Reply-To"] == "<c1@customer.example>"
        raw = await client.get(f"/mail/{mail.id}/raw")
        assert raw.status_code == 200 and "In-Reply-To: <c1@customer.example>" in raw.text
        assert (await client.get("/mail/..%2Fetc")).status_code == 404
        assert (await client.get(f"/mail/{new_id()}")).status_code == 404


def test_catcher_ids_sort_by_arrival_and_reject_paths() -> None:
    assert new_id(1) < new_id(2) < new_id(10**18)
    assert is_id(new_id()) and not is_id("../x") and not is_id(new_id() + "/x")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_describe_never_raises_on_any_bytes(data: bytes) -> None:
    view = describe(data)
    assert isinstance(view.subject, str) and isinstance(view.text, str)


@settings(max_examples=100, deadline=None)
@given(
    subject=st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=60),
    body=st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"),
        min_size=1,
        max_size=300,
    ),
)
def test_describe_shows_subject_and_text_as_sent(subject: str, body: str) -> None:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = SUPPORT
    message.set_content(body)
    view = describe(message.as_bytes())
    assert view.subject == " ".join(subject.split())
    assert view.text.strip() == body.strip()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"host": "0.0.0.0"}, "not a loopback address"),
        ({"port": 70000}, "not a TCP port"),
        ({"folder": "../elsewhere"}, "inside the data folder"),
        ({"max_messages": 0}, "at least 1"),
    ],
)
def test_catcher_settings_refuse_bad_values(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CatcherSettings(**change)  # type: ignore[arg-type]


async def test_replies_go_to_the_catcher_when_no_relay_is_set(tmp_path, monkeypatch) -> None:
    port = free_port()
    async with opened(tmp_path, monkeypatch, None, catcher={"port": port}) as bridge:
        check = await bridge.hooks.check("email")
        assert check.ok and f"mail catcher on 127.0.0.1:{port}" in check.detail
        plugin = bridge.pm.get_plugin("email")
        async with anyio.create_task_group() as tg:
            await tg.start(plugin.catcher.run)
            await receive(bridge, customer_mail("Hello", msgid="<k1@customer.example>"))
            session = await only_session(bridge)
            message = await agent_message(bridge, session, "Hi Ann, on it.", "caught")
            delivery = await deliver(bridge, session, message)
            tg.cancel_scope.cancel()
        assert delivery.state.value == "sent"
        [mail] = plugin.catcher.store.all()
        view = describe(mail.data)
        assert "Hi Ann, on it." in view.text
        assert dict(view.thread)["In-Reply-To"] == "<k1@customer.example>"


def test_a_catcher_on_a_public_address_is_a_config_error(tmp_path, monkeypatch) -> None:
    from casebridge.bridge import Bridge
    from support.bridges import install_jsonl, write_config

    install_jsonl(monkeypatch, tmp_path)
    path = write_config(
        tmp_path,
        bridge={"channels": ["email"]},
        plugins={"email": {"support_addresses": [SUPPORT], "catcher": {"host": "0.0.0.0"}}},
    )
    with pytest.raises(ConfigError, match=r"catcher.*loopback"):
        Bridge.from_config(path)
