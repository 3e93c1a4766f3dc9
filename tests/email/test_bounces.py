"""Bounces of our replies: read (pure), and turned into a failed delivery the rep sees."""

from __future__ import annotations

import anyio
from casebridge import deliveries
from casebridge.deliveries import ReplyState
from casebridge.jobs import Run
from casebridge.model import Author, RawInbound, utcnow
from casebridge_email.bounces import read_bounce
from casebridge_email.envelope import envelope_fields
from hypothesis import given, settings
from hypothesis import strategies as st
from support.bridges import only_session, settle
from test_email_plugin_hooks import agent_message, opened, receive
from test_email_plugin_support import SUPPORT, customer_mail, free_port


def dsn(
    returned_id: str,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <ann@customer.example>: user unknown",
) -> bytes:
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.customer.example>\r\n"
        f"To: {SUPPORT}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn1@mx.customer.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.customer.example\r\n\r\n"
        f"Final-Recipient: rfc822; ann@customer.example\r\nAction: {action}\r\n"
        f"Status: {status}\r\nDiagnostic-Code: {diagnostic}\r\n"
        "--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Support <{SUPPORT}>\r\nMessage-ID: <{returned_id}>\r\nSubject: Re: Hello\r\n"
        "--b--\r\n"
    ).encode()


def test_a_failure_report_names_our_reply_and_why() -> None:
    bounce = read_bounce(dsn("r1.tok@example.com"), "example.com")
    assert bounce is not None and bounce.message_ids == ("r1.tok@example.com",)
    assert bounce.reason == "status 5.1.1; 550 5.1.1 <ann@customer.example>: user unknown"


def test_what_is_not_a_bounce_of_ours_is_ignored() -> None:
    assert (
        read_bounce(dsn("r1@example.com", action="delayed", status="4.4.1"), "example.com") is None
    )
    assert read_bounce(dsn("r1@elsewhere.example"), "example.com") is None
    auto_reply = (
        b"Auto-Submitted: auto-replied\r\nIn-Reply-To: <r1@example.com>\r\n\r\nI am away.\r\n"
    )
    assert read_bounce(auto_reply, "example.com") is None
    assert read_bounce(dsn("r1@example.com"), "") is None


def test_an_x_failed_recipients_bounce_counts() -> None:
    raw = (
        b"X-Failed-Recipients: ann@customer.example\r\nSubject: failure\r\n\r\n"
        b"  Message-ID: <r9@example.com>\r\n"
    )
    bounce = read_bounce(raw, "example.com")
    assert bounce is not None and bounce.message_ids == ("r9@example.com",)
    assert bounce.reason == "no reason given"


@settings(deadline=None)  # the machine is shared: no per-example deadline
@given(st.binary(max_size=3000), st.sampled_from(["example.com", "", "a.b"]))
def test_read_bounce_never_raises(raw: bytes, domain: str) -> None:
    bounce = read_bounce(raw, domain)
    assert bounce is None or (bounce.message_ids and len(bounce.reason) <= 300)


@settings(deadline=None)  # the machine is shared: no per-example deadline
@given(
    st.from_regex(r"[a-z0-9.]{1,30}", fullmatch=True),
    st.text(st.characters(codec="ascii", blacklist_categories=("Cc",)), max_size=80),
)
def test_any_returned_id_of_ours_is_found(local: str, diagnostic: str) -> None:
    bounce = read_bounce(dsn(f"{local}@example.com", diagnostic=diagnostic), "example.com")
    assert bounce is not None and bounce.message_ids == (f"{local}@example.com",)


async def test_a_bounced_reply_is_failed_and_noted(tmp_path, monkeypatch) -> None:
    async with opened(tmp_path, monkeypatch, None, catcher={"port": free_port()}) as bridge:
        plugin = bridge.pm.get_plugin("email")
        async with anyio.create_task_group() as tg:
            await tg.start(plugin.catcher.run)
            await receive(bridge, customer_mail("Hello", msgid="<b1@customer.example>"))
            session = await only_session(bridge)
            message = await agent_message(bridge, session, "Hi Ann", "bounced")
            await bridge.pipeline.replies.deliver(session, message, Run(1, None, utcnow()))
            tg.cancel_scope.cancel()
        sent = await deliveries.get(bridge.store, message.id)
        assert sent is not None and sent.state is ReplyState.SENT
        our_id = sent.external_id
        dropped = await bridge.receive(
            RawInbound(
                channel="email", payload=dsn(our_id), fields=envelope_fields("", (SUPPORT,))
            )
        )
        assert dropped.dropped.startswith("delivery status notification")
        await settle(bridge)
        failed = await deliveries.get(bridge.store, message.id)
        assert failed is not None and failed.state is ReplyState.FAILED
        assert "returned it (status 5.1.1; 550 5.1.1" in failed.detail
        note = (await bridge.store.transcript(session.id))[-1]
        assert note.author is Author.SYSTEM and "user unknown" in note.text
