"""Header bounds: a header of thousands of encoded words (quadratic in the standard
library's parser) is read up to the bound, the rest noted, the message kept."""

from __future__ import annotations

import re

import pytest
from casebridge_email.header_limits import (
    MAX_ENCODED_WORDS,
    MAX_HEADER_CHARS,
    bounded,
    cut_note,
    is_bounded,
)
from casebridge_email.mime import parse_email
from hypothesis import given, settings
from hypothesis import strategies as st


def encoded_words(count: int) -> str:
    """``count`` encoded words folded 70 characters wide, as a hostile sender writes them."""
    words = [f"=?utf-8?q?w{i}?=" for i in range(count)]
    lines, line = [], ""
    for word in words:
        if len(line) + len(word) > 70:
            lines.append(line)
            line = ""
        line = f"{line} {word}" if line else word
    return "\r\n ".join([*lines, line])


def message(subject: str, *, content_type: str = "text/plain") -> bytes:
    return (
        f"From: Ann <ann@customer.example>\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <m1@customer.example>\r\nContent-Type: {content_type}\r\n\r\n"
        "My router 4711 keeps rebooting.\r\n"
    ).encode()


@pytest.mark.parametrize("count", [12_000, 20_000])
def test_subject_of_thousands_of_encoded_words_is_read_up_to_the_bound(count: int) -> None:
    raw = message(encoded_words(count))
    assert len(raw) < 1_000_000
    parsed = parse_email(raw)
    # Adjacent encoded words join without spaces (RFC 2047 6.2): w0w1w2...
    assert parsed.subject == "".join(f"w{i}" for i in range(MAX_ENCODED_WORDS))
    assert cut_note("Subject", encoded_words(count)) in parsed.notes
    assert f"{count} encoded words; the first {MAX_ENCODED_WORDS} were read" in " ".join(
        parsed.notes
    )
    # Everything else of the message is intact.
    assert parsed.from_addr == "ann@customer.example" and parsed.message_id == "m1@customer.example"
    assert parsed.text.strip() == "My router 4711 keeps rebooting."


def test_content_type_of_thousands_of_encoded_words_does_not_lose_the_body() -> None:
    # The parser itself reads Content-Type (for the boundary) while parsing.
    hostile = "multipart/mixed; boundary=BB; x=" + encoded_words(20_000)
    raw = (
        "From: ann@customer.example\r\nSubject: hi\r\nContent-Type: " + hostile + "\r\n\r\n"
        "--BB\r\nContent-Type: text/plain; name=" + encoded_words(20_000) + "\r\n\r\n"
        "Parcel 6620 is lost.\r\n--BB--\r\n"
    ).encode()
    parsed = parse_email(raw)
    assert parsed.subject == "hi"
    assert "Parcel 6620 is lost." in parsed.text


def test_address_headers_are_read_up_to_the_bound() -> None:
    many = ", ".join(f"=?utf-8?q?Person_{i}?= <p{i}@customer.example>" for i in range(20_000))
    raw = message("hi").replace(
        b"To: support@example.com", b"To: support@example.com, " + many.encode()
    )
    parsed = parse_email(raw)
    assert parsed.to[0] == "support@example.com"
    assert 1 < len(parsed.to) < 20_000
    assert any(note.startswith("header To is too long") for note in parsed.notes)


def test_parts_beyond_the_time_budget_are_skipped_and_noted() -> None:
    raw = (
        b"From: ann@customer.example\r\nContent-Type: multipart/mixed; boundary=BB\r\n\r\n"
        b"--BB\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--BB--\r\n"
    )
    assert parse_email(raw).text.strip() == "first"
    skipped = parse_email(raw, budget=-1.0)
    assert skipped.text == "" and skipped.from_addr == "ann@customer.example"
    assert any("its remaining parts were skipped" in note for note in skipped.notes)


pieces = st.lists(st.sampled_from(["=?utf-8?q?a?=", " ", "x", "=?", "\r\n "]), max_size=400)


@settings(deadline=None)
@given(pieces)
def test_bounded_is_a_prefix_within_both_bounds(parts: list[str]) -> None:
    value = "".join(parts)
    cut = bounded(value)
    assert value.startswith(cut)
    assert len(cut) <= MAX_HEADER_CHARS
    assert cut.count("=?") <= MAX_ENCODED_WORDS
    if not is_bounded(value):
        assert cut == value
    else:
        assert cut != value


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=3 * MAX_ENCODED_WORDS), st.integers(0, 40))
def test_bounded_keeps_exactly_the_first_words(count: int, pad: int) -> None:
    value = " ".join(["=?utf-8?q?a?="] * count) + " " * pad
    cut = bounded(value)
    assert len(re.findall(r"=\?utf-8\?q\?a\?=", cut)) == min(count, MAX_ENCODED_WORDS)
    assert is_bounded(value) == (count > MAX_ENCODED_WORDS)


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=3 * MAX_HEADER_CHARS))
def test_bounded_cuts_long_plain_values_at_the_character_bound(length: int) -> None:
    value = "x" * length
    assert bounded(value) == value[:MAX_HEADER_CHARS]
    assert is_bounded(value) == (length > MAX_HEADER_CHARS)
