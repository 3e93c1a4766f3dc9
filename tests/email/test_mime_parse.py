"""parse_email on well-formed messages: headers, bodies, attachments, charsets."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

import pytest
from casebridge_email.mime import (
    decode_text,
    first_message_id,
    message_ids,
    parse_email,
    safe_filename,
)
from hypothesis import given
from hypothesis import strategies as st

NESTED = b"""From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <Juergen@Example.COM>
To: Support@Example.com, "Doe, Jane" <jane@example.org>
Cc: c@example.net
Reply-To: replies@example.com
Subject: =?utf-8?b?R3LDvMOfZQ==?= from =?iso-8859-1?q?M=FCnchen?=
Date: Mon, 3 Feb 2025 10:00:00 +0100
Message-ID: <abc.123@mail.example.com>
In-Reply-To: <cb.tok.1@bridge.example>
References: <first@a>
 <second@b> <cb.tok.1@bridge.example>
Auto-Submitted: No
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Gr=FC=DFe aus M=FCnchen
--alt
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

PHA+R3LDvMOfZSA8aW1nIHNyYz0iY2lkOmxvZ29AeCI+PC9wPg==
--rel
Content-Type: image/png
Content-ID: <logo@x>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--rel--
--alt--
--outer
Content-Type: message/rfc822

From: someone@else.example
Subject: The original problem
Content-Type: text/plain

forwarded words that are not the body
--outer
Content-Type: application/pdf; name="=?utf-8?q?R=C3=A9sum=C3=A9.pdf?="
Content-Disposition: attachment; filename*=utf-8''..%2F..%2Fetc%2F%C3%A9t%C3%A9.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQ=
--outer--
"""


def test_headers_are_decoded_and_normalized() -> None:
    p = parse_email(NESTED)
    assert p.from_addr == "juergen@example.com"
    assert p.from_name == "Jürgen Müller"
    assert p.to == ("support@example.com", "jane@example.org")
    assert p.cc == ("c@example.net",)
    assert p.reply_to == ("replies@example.com",)
    assert p.subject == "Grüße from München"
    assert p.date == datetime(2025, 2, 3, 9, 0, tzinfo=UTC)
    assert p.message_id == "abc.123@mail.example.com"
    assert p.in_reply_to == "cb.tok.1@bridge.example"
    assert p.references == ("first@a", "second@b", "cb.tok.1@bridge.example")
    assert p.auto_submitted == "no"
    assert p.content_type == "multipart/mixed"
    assert p.size == len(NESTED)
    assert p.notes == ()


def test_body_comes_from_the_message_not_the_forwarded_one() -> None:
    p = parse_email(NESTED)
    assert p.text == "Grüße aus München"
    assert p.html == '<p>Grüße <img src="cid:logo@x"></p>'
    assert "forwarded words" not in p.text + p.html


def test_attachments_inline_forwarded_and_named_safely() -> None:
    p = parse_email(NESTED)
    logo, forwarded, pdf = p.attachments
    assert (logo.content_type, logo.content_id, logo.inline) == ("image/png", "logo@x", True)
    assert logo.data.startswith(b"\x89PNG")
    assert forwarded.content_type == "message/rfc822"
    assert forwarded.name == "The original problem.eml"
    assert b"forwarded words that are not the body" in forwarded.data
    assert not forwarded.inline
    assert pdf.name == "été.pdf"
    assert pdf.data == b"%PDF-1.4"
    assert not pdf.inline


def test_apple_mail_inline_image_without_disposition_and_split_text() -> None:
    raw = (
        b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nbefore the photo\r\n"
        b"--b\r\nContent-Type: image/jpeg; name=IMG_1.jpeg\r\nContent-Transfer-Encoding: base64"
        b"\r\n\r\n/9j/4AAQ\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nafter the photo\r\n--b--\r\n"
    )
    p = parse_email(raw)
    assert p.text == "before the photo\nafter the photo"
    (img,) = p.attachments
    assert (img.name, img.inline, img.data[:2]) == ("IMG_1.jpeg", True, b"\xff\xd8")


def test_text_attachment_is_not_body() -> None:
    raw = (
        b"From: a@example.com\nContent-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\nthe body\n"
        b"--b\nContent-Type: text/plain\nContent-Disposition: attachment; filename=log.txt\n\n"
        b"log lines\n--b--\n"
    )
    p = parse_email(raw)
    assert p.text == "the body"
    assert [(a.name, a.data) for a in p.attachments] == [("log.txt", b"log lines")]


def test_emailmessage_round_trip() -> None:
    msg = EmailMessage()
    msg["From"] = "Zoë <zoe@example.com>"
    msg["To"] = "support@example.com"
    msg["Subject"] = "Ünïcödé subject ✓"
    msg["Date"] = format_datetime(datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC))
    msg.set_content("plain ✓ text\n")
    msg.add_alternative("<b>html ✓</b>\n", subtype="html")
    msg.add_attachment(
        b"\x00\x01binary", maintype="application", subtype="octet-stream", filename="données.bin"
    )
    p = parse_email(msg.as_bytes())
    assert (p.from_addr, p.from_name, p.subject) == ("zoe@example.com", "Zoë", msg["Subject"])
    assert p.text == "plain ✓ text\n"
    assert p.html == "<b>html ✓</b>\n"
    assert [(a.name, a.data) for a in p.attachments] == [("données.bin", b"\x00\x01binary")]


@given(st.text(min_size=1, max_size=200))
def test_any_text_survives_a_round_trip(body: str) -> None:
    msg = EmailMessage()
    msg["From"] = "x@example.com"
    msg.set_content(body)
    p = parse_email(msg.as_bytes())
    # set_content normalizes line endings and ends the body with a newline.
    expected = b"\n".join(body.encode("utf-8", "surrogatepass").splitlines()) + b"\n"
    assert p.text == expected.decode("utf-8", "replace") or not body.strip()


@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=100),
    st.sampled_from(
        ["utf-8", "utf-16", "iso-8859-1", "windows-1252", "koi8-r", "shift_jis", "gb18030"]
    ),
)
def test_declared_charsets_decode_exactly(text: str, charset: str) -> None:
    try:
        data = text.encode(charset)
    except UnicodeEncodeError:
        return
    assert decode_text(data, charset) == (text, None)


def test_mislabeled_and_unknown_charsets_fall_back_with_a_note() -> None:
    text, note = decode_text("naïve café".encode(), "us-ascii")
    assert text == "naïve café"
    assert note == "charset 'us-ascii' unreadable; decoded as utf-8"
    text, note = decode_text("Grüße aus München, schöne Grüße".encode("cp1252"), "x-unknown")
    assert "M" in text and "nchen" in text
    assert note is not None and note.startswith("charset 'x-unknown' unreadable; decoded as ")
    text, note = decode_text(b"plain", "rot13")
    assert (text, note) == ("plain", "charset 'rot13' unreadable; decoded as utf-8")


def test_message_ids_with_and_without_brackets() -> None:
    assert message_ids("<a@b> <c@d>\r\n <e@f>") == ("a@b", "c@d", "e@f")
    assert message_ids("a@b c@d") == ("a@b", "c@d")
    assert message_ids("<a@b> <a@b>") == ("a@b",)
    assert first_message_id("") == ""


@given(
    st.lists(st.from_regex(r"[A-Za-z0-9.$_-]{1,20}@[a-z0-9.-]{1,20}", fullmatch=True), max_size=8)
)
def test_message_ids_round_trip(ids: list[str]) -> None:
    header = " ".join(f"<{i}>" for i in ids)
    assert message_ids(header) == tuple(dict.fromkeys(ids))


@given(st.text(max_size=300))
def test_safe_filename_never_holds_a_path(name: str) -> None:
    safe = safe_filename(name)
    assert safe and "/" not in safe and "\\" not in safe
    assert not safe.startswith(".")
    assert all(ord(c) >= 0x20 and c != "\x7f" for c in safe)
    assert len(safe) <= 200


def test_safe_filename_keeps_the_extension_of_long_names() -> None:
    assert safe_filename("a" * 500 + ".pdf").endswith(".pdf")
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("", "image/png") == "attachment.png"


@pytest.mark.parametrize("header", [
    'From: <<<@@@>>>, "unterminated <a@b, ,,, @, a@, @b',
    "From: a b@c d",
])
def test_garbage_from_headers_give_no_address(header: str) -> None:
    parsed = parse_email(f"{header}\nTo: support@example.com\nSubject: x\n\nbody\n".encode())
    assert parsed.from_addr == ""
    assert any("no readable address" in note for note in parsed.notes)


def test_ordinary_addresses_still_parse() -> None:
    parsed = parse_email(b"From: \"Ann, Example\" <Ann.O'Neil+tag@Mail.Example.com>\n"
                         b"To: support@example.com\n\nbody\n")
    assert parsed.from_addr == "ann.o'neil+tag@mail.example.com"
    assert parsed.from_name == "Ann, Example"
