"""The pure RawInbound -> Message conversion (casebridge_email.inbound) and the derived
Message-ID nonce: properties over generated input, then examples."""

from __future__ import annotations

import uuid
from email.message import EmailMessage

from casebridge.model import Author, Direction, RawInbound, derived_id
from casebridge_email.envelope import envelope_fields
from casebridge_email.inbound import (
    LARGE_TEXT,
    base_address,
    bodies,
    external_id,
    session_hint,
    to_message,
)
from casebridge_email.mime import ParsedEmail, parse_email
from casebridge_email.plugin import nonce_for
from casebridge_email.tokens import make_message_id, make_token, plus_address
from hypothesis import given
from hypothesis import strategies as st

SECRET = b"reply-token-secret"
OTHER_SECRET = b"someone-else"
SUPPORT = "support@example.com"
uuids = st.uuids().map(str)
local_parts = st.from_regex(r"[a-z][a-z0-9.]{0,15}", fullmatch=True)
tags = st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True)


def is_ours(address: str) -> bool:
    return base_address(address) == SUPPORT


def parsed(**fields: object) -> ParsedEmail:
    values: dict[str, object] = {"from_addr": "ann@customer.example", "message_id": "m@c.example"}
    values.update(fields)
    return ParsedEmail(**values)  # type: ignore[arg-type]


@given(uuids)
def test_a_plus_address_token_names_its_session(session_id: str) -> None:
    address = plus_address(SUPPORT, make_token(session_id, SECRET))
    assert session_hint([address], parsed(), SECRET) == session_id
    assert session_hint([], parsed(to=(address,)), SECRET) == session_id


@given(uuids, st.lists(st.from_regex(r"[a-z0-9]{3,10}@[a-z]{2,8}\.example", fullmatch=True),
                       max_size=3))
def test_our_message_id_in_the_thread_names_its_session(session_id: str, others: list[str]
                                                        ) -> None:
    ours = make_message_id(make_token(session_id, SECRET), "example.com", "abc123").strip("<>")
    assert session_hint([], parsed(in_reply_to=ours), SECRET) == session_id
    assert session_hint([], parsed(references=(*others, ours, *others)), SECRET) == session_id


@given(uuids)
def test_a_token_made_with_another_secret_names_nothing(session_id: str) -> None:
    token = make_token(session_id, OTHER_SECRET)
    forged = parsed(in_reply_to=make_message_id(token, "example.com", "x1").strip("<>"))
    assert session_hint([plus_address(SUPPORT, token)], forged, SECRET) == ""


@given(local_parts, st.one_of(st.just(""), tags), st.from_regex(r"[a-z]{2,10}\.[a-z]{2,4}",
                                                               fullmatch=True))
def test_base_address_drops_the_plus_tag_and_case(local: str, tag: str, domain: str) -> None:
    address = f"{local}+{tag}@{domain}" if tag else f"{local}@{domain}"
    base = base_address(f"<{address.upper()}>")
    assert base == f"{local}@{domain}"
    assert base_address(base) == base


@given(st.text(max_size=60))
def test_nonce_is_stable_and_valid_for_a_message_id(message_id: str) -> None:
    nonce = nonce_for(message_id)
    assert nonce == nonce_for(message_id)
    token = make_token(str(uuid.uuid4()), SECRET)
    assert make_message_id(token, "example.com", nonce).startswith(f"<cb.{token}.{nonce}@")


@given(st.text(max_size=300), st.text(max_size=300))
def test_html_is_never_passed_through_unsanitized(text: str, noise: str) -> None:
    html = f"<p>{noise}</p><script>alert(1)</script><img src=x onerror=alert(2)>{text}"
    _, _, clean = bodies(parsed(html=html), keep_signature=False)
    lowered = clean.lower()
    assert "<script" not in lowered and "onerror" not in lowered


@given(st.binary(min_size=1, max_size=200))
def test_a_message_without_message_id_is_known_by_its_bytes(payload: bytes) -> None:
    first = external_id(ParsedEmail(), payload)
    assert first.startswith("sha256:") and first == external_id(ParsedEmail(), payload)
    assert external_id(parsed(), payload) == "m@c.example"


def raw_mail(body: str, **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = headers.pop("From", "Ann Example <Ann@Customer.example>")
    msg["To"] = headers.pop("To", "Support <support@example.com>")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


def test_to_message_fills_every_field_of_a_customer_mail() -> None:
    data = raw_mail(
        "Still broken.\n\nOn Mon, Support wrote:\n> Try again\n\n-- \nAnn\n",
        Subject="Re: Printer", Message_ID="<m2@customer.example>", Cc="boss@customer.example",
        In_Reply_To="<m1@customer.example>", References="<m0@customer.example>",
        Date="Tue, 04 Jun 2024 08:30:00 +0200",
    )
    raw = RawInbound(channel="email", payload=data,
                     fields=envelope_fields("ann@customer.example", ("Support+abc@Example.com",)))
    message = to_message(raw, parse_email(data), is_ours=is_ours, keep_signature=False,
                         token_secret=SECRET)
    assert message.id == derived_id("email", "m2@customer.example")
    assert message.external_id == "m2@customer.example"
    assert message.direction is Direction.INBOUND and message.author is Author.CUSTOMER
    assert message.sender == "ann@customer.example" and message.sender_name == "Ann Example"
    assert message.recipients == (SUPPORT, "boss@customer.example")
    assert message.text == "Still broken."
    assert "> Try again" in message.original_text and "Ann" in message.original_text
    assert message.thread_refs == ("m1@customer.example", "m0@customer.example")
    assert message.sent_at.isoformat() == "2024-06-04T06:30:00+00:00"
    assert "session_hint" not in message.meta


def test_to_message_keeps_the_signature_when_asked() -> None:
    data = raw_mail("Hello\n\n-- \nAnn Example\nACME Corp\n", Message_ID="<s@c.example>")
    raw = RawInbound(channel="email", payload=data, fields=envelope_fields("", (SUPPORT,)))
    kept = to_message(raw, parse_email(data), is_ours=is_ours, keep_signature=True,
                      token_secret=SECRET)
    trimmed = to_message(raw, parse_email(data), is_ours=is_ours, keep_signature=False,
                         token_secret=SECRET)
    assert trimmed.text == "Hello"
    assert "ACME Corp" in kept.text


def test_html_only_mail_gets_text_from_the_visible_html() -> None:
    html = ('<div>Thanks, it works now.</div><div class="gmail_quote">On Mon, Support wrote:'
            '<blockquote>Old text</blockquote></div><script>steal()</script>')
    text, original, clean = bodies(parsed(html=html), keep_signature=False)
    assert text == "Thanks, it works now."
    assert "Old text" in original
    assert "Thanks, it works now." in clean and "Old text" not in clean and "steal" not in clean



DEEP_HTML = "<div>" * 30_000 + "Router <b>4711</b> reboots.<script>x()</script>" + "</div>" * 30_000


def test_too_deeply_nested_html_shows_the_text_part_with_a_note() -> None:
    message = to_message(
        RawInbound(channel="email", payload=b"x", fields=envelope_fields("", (SUPPORT,))),
        parsed(text="Router 4711 reboots every night.", html=DEEP_HTML),
        is_ours=is_ours, keep_signature=False, token_secret=SECRET,
    )
    assert message.html == ""
    assert message.text == message.original_text == "Router 4711 reboots every night."
    assert "the HTML part was too deeply nested to render; the text part is shown" in (
        message.notes
    )


def test_too_deeply_nested_html_alone_is_shown_as_its_flat_text() -> None:
    message = to_message(
        RawInbound(channel="email", payload=b"x", fields=envelope_fields("", (SUPPORT,))),
        parsed(html=DEEP_HTML),
        is_ours=is_ours, keep_signature=False, token_secret=SECRET,
    )
    assert message.html == ""
    assert message.text == "Router 4711 reboots."
    assert any("too deeply nested to render; its text is shown without formatting" in n
               for n in message.notes)
    # A shallow HTML part is rendered as before, without a note.
    shallow = to_message(
        RawInbound(channel="email", payload=b"x", fields=envelope_fields("", (SUPPORT,))),
        parsed(html="<div><p>Router <b>4711</b> reboots.</p></div>"),
        is_ours=is_ours, keep_signature=False, token_secret=SECRET,
    )
    assert "<b>4711</b>" in shallow.html and not shallow.notes


def test_an_untrimmed_text_is_the_original_itself_not_a_copy() -> None:
    text, original, _ = bodies(parsed(text="The printer is broken."), keep_signature=False)
    assert text is original and text == "The printer is broken."
    small, _, _ = bodies(parsed(text="The printer is broken.\n"), keep_signature=False)
    assert small == "The printer is broken."  # small texts are tidied as always


def test_a_large_text_with_nothing_to_trim_is_kept_as_sent() -> None:
    log = "printer error line\n" * (LARGE_TEXT // 19 + 1)
    text, original, _ = bodies(parsed(text=log), keep_signature=False)
    assert text is original and text.endswith("line\n")
    quoted = log + "\nOn Mon, Jan 6, 2025 at 9:00 AM Ann <ann@example.com> wrote:\n> old\n"
    text, original, _ = bodies(parsed(text=quoted), keep_signature=False)
    assert original == quoted and text == log.rstrip()
