"""compose_reply and reply_subject: threading, alternatives, no header injection."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser

import pytest
from casebridge_email.compose import (
    MAX_NAME,
    MAX_REFERENCES,
    compose_reply,
    header_text,
    normalize_message_id,
    reference_chain,
    reply_subject,
)
from casebridge_email.mime import parse_email
from hypothesis import given, settings
from hypothesis import strategies as st

BASE = {
    "from_addr": "support@example.com",
    "from_name": "Example Support",
    "to_addr": "ann@customer.example",
    "subject": "Order 42",
    "text": "Your parcel left today.",
    "html": None,
    "in_reply_to": "<CAF1@mail.gmail.com>",
    "references": ["<root@a.example>", "<mid@b.example>"],
    "message_id": "<cb.token.n1@bridge.example.com>",
    "auto_submitted": False,
    "date": datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
}
EXPECTED = {
    "from", "to", "subject", "date", "message-id", "in-reply-to", "references",
    "mime-version", "content-type", "content-transfer-encoding",
}  # fmt: skip


def reparse(msg):  # type: ignore[no-untyped-def]
    return BytesParser(policy=policy.default).parsebytes(msg.as_bytes())


def test_threaded_plain_reply() -> None:
    out = reparse(compose_reply(**BASE))
    assert {k.lower() for k in out} == EXPECTED
    assert out["Subject"] == "Re: Order 42"
    assert out["In-Reply-To"] == "<CAF1@mail.gmail.com>"
    assert out["References"] == "<root@a.example> <mid@b.example> <CAF1@mail.gmail.com>"
    assert out["Message-ID"] == "<cb.token.n1@bridge.example.com>"
    assert out["From"] == "Example Support <support@example.com>"
    assert out["Date"] == "Thu, 02 Jan 2025 03:04:05 +0000"
    assert out.get_content().strip() == "Your parcel left today."


def test_html_alternative_and_auto_submitted() -> None:
    msg = compose_reply(
        **{
            **BASE,
            "html": "<p>Your parcel</p>",
            "auto_submitted": True,
            "reply_to": "support+tok@example.com",
        }
    )
    parsed = parse_email(msg.as_bytes())
    assert parsed.text == "Your parcel left today.\n"
    assert parsed.html == "<p>Your parcel</p>\n"
    assert parsed.auto_submitted == "auto-replied"
    assert parsed.reply_to == ("support+tok@example.com",)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["X-Auto-Response-Suppress"] == "All"


def test_human_reply_has_no_auto_submitted() -> None:
    assert "Auto-Submitted" not in compose_reply(**BASE)


def test_long_reference_chains_are_capped_and_folded_without_encoding() -> None:
    ids = [f"<{'x' * 80}.{i}@mail.example.com>" for i in range(40)]
    msg = compose_reply(**{**BASE, "references": ids, "in_reply_to": ids[-1]})
    raw = msg.as_bytes()
    assert b"=?utf-8?" not in raw
    assert all(len(line) <= 998 for line in raw.splitlines())
    refs = parse_email(raw).references
    assert len(refs) == MAX_REFERENCES
    assert refs[0] == ids[0].strip("<>") and refs[-1] == ids[-1].strip("<>")
    assert list(refs[1:]) == [i.strip("<>") for i in ids[-(MAX_REFERENCES - 1) :]]
    assert parse_email(raw).in_reply_to == ids[-1].strip("<>")


def test_reference_chain_dedups_and_cleans() -> None:
    assert reference_chain(["a@b", "<a@b>", " <c@d>\r\n"], "c@d") == ["<a@b>", "<c@d>"]
    assert reference_chain([], None) == []


@pytest.mark.parametrize("field", ["from_addr", "to_addr", "reply_to"])
@pytest.mark.parametrize(
    "value",
    [
        "x@evil.example\r\nBcc: y@evil.example",
        "a@b.example, c@d.example",
        "Name <a@b.example>",
        "nobody",
        "",
        "a@@b.example",
        "a b@c.example",
    ],
)
def test_addresses_must_be_single(field: str, value: str) -> None:
    if field == "reply_to" and not value:
        return
    with pytest.raises(ValueError, match=field):
        compose_reply(**{**BASE, field: value})


def test_bad_own_message_id() -> None:
    with pytest.raises(ValueError, match="message_id"):
        compose_reply(**{**BASE, "message_id": "<no at sign>"})
    with pytest.raises(ValueError, match="message_id"):
        compose_reply(**{**BASE, "message_id": "<a@b>\r\nBcc: x@evil"})


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Order 42", "Re: Order 42"),
        ("Re: Order 42", "Re: Order 42"),
        ("RE: re: Re:Order 42", "Re: Order 42"),
        ("AW: Aw: WG: Bestellung", "Re: WG: Bestellung"),
        ("Sv: Antw: Réf: RÉF : x", "Re: x"),
        ("Re[3]: Re(2): x", "Re: x"),
        ("Fwd: x", "Re: Fwd: x"),
        ("", "Re:"),
        ("Re:", "Re:"),
        ("Regarding: x", "Re: Regarding: x"),
        ("Line\r\nBcc: x", "Re: Line Bcc: x"),
    ],
)
def test_reply_subject_examples(subject: str, expected: str) -> None:
    assert reply_subject(subject) == expected


PREFIX = st.sampled_from(
    ["Re:", "RE: ", "re :", "Aw: ", "AW:", "Sv: ", "Antw: ", "Réf: ", "Re[2]: "]
)


@given(st.lists(PREFIX, max_size=4), st.text(max_size=60))
def test_reply_subject_idempotent_and_single_prefix(prefixes: list[str], subject: str) -> None:
    once = reply_subject("".join(prefixes) + subject)
    assert reply_subject(once) == once
    assert once.startswith("Re:")
    assert not re.match(r"Re:\s*(re|aw|sv|antw|réf)\s*:", once, re.IGNORECASE)
    assert "\n" not in once and "\r" not in once


INJECT = st.sampled_from(
    ["\r\nBcc: x@evil.example", "\nX-Evil: 1", "\r", "\n\n<b>body</b>", "\u2028", "\x00", "\x85"]
)
hostile_text = st.lists(st.text(max_size=20) | INJECT, max_size=5).map("".join)


@settings(max_examples=150)
@given(
    hostile_text,
    hostile_text,
    hostile_text,
    st.lists(hostile_text, max_size=4),
    hostile_text,
    st.booleans(),
)
def test_no_field_can_inject_a_header(
    subject: str, name: str, parent: str, refs: list[str], text: str, auto: bool
) -> None:
    msg = compose_reply(
        **{
            **BASE,
            "subject": subject,
            "from_name": name,
            "in_reply_to": parent,
            "references": refs,
            "text": text,
            "html": text or None,
            "auto_submitted": auto,
        }
    )
    out = reparse(msg)
    names = {k.lower() for k in out}
    expected = set(EXPECTED)
    if auto:
        expected |= {"auto-submitted", "x-auto-response-suppress"}
    chain = reference_chain(refs, parent)
    if not chain:
        expected.discard("references")
    if not normalize_message_id(parent):
        expected.discard("in-reply-to")
    else:
        assert out["In-Reply-To"] == normalize_message_id(parent)
    if text:
        expected.discard("content-transfer-encoding")  # multipart/alternative has none
    assert names == expected
    assert len(out.keys()) == len(names)
    assert out["Subject"] == reply_subject(subject)
    assert out["From"].addresses[0].display_name == header_text(name, MAX_NAME)
    assert out["From"].addresses[0].addr_spec == "support@example.com"
    assert out["To"].addresses[0].addr_spec == "ann@customer.example"
    if chain:
        assert out["References"].split() == chain
    for value in out.values():
        assert "\r" not in str(value) and "\n" not in str(value)


@settings(max_examples=60)
@given(st.text(min_size=60, max_size=300), st.text(min_size=60, max_size=400))
def test_long_non_ascii_names_and_subjects_round_trip(name: str, subject: str) -> None:
    out = reparse(compose_reply(**{**BASE, "from_name": name, "subject": subject}))
    assert out["From"].addresses[0].display_name == header_text(name, MAX_NAME)
    assert out["Subject"] == reply_subject(subject)
