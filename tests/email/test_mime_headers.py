"""mime_headers: the strings policy.default's header objects give, computed without them.

Every property compares with the stdlib itself: ``str(policy.default.header_factory(...))``
is what casebridge read before, so any difference would change a parse.
"""

from __future__ import annotations

from email import policy
from email.header import Header
from email.utils import formataddr

import pytest
from casebridge_email.mime import parse_email
from casebridge_email.mime_headers import (
    VALUES,
    date_text,
    header_text,
    mime_text,
    unfolded,
    unstructured_text,
)
from hypothesis import given, settings
from hypothesis import strategies as st

REGISTRY = policy.default.header_factory


def stdlib_text(name: str, value: str) -> str:
    try:
        return str(REGISTRY(name, value))
    except Exception as exc:  # the stdlib's parse raising is part of what is compared
        return f"raised {type(exc).__name__}"


def ours(name: str, value: str) -> str:
    try:
        return header_text(name, value)
    except Exception as exc:
        return f"raised {type(exc).__name__}"


# Pieces of MIME header values: tokens, RFC 2231 syntax, quoted strings (escapes, encoded
# words and raw 8-bit bytes among them), specials and folding whitespace.
mime_pieces = st.lists(
    st.sampled_from([
        "text", "/", "plain", ";", " ", "\t", "charset", "=", "utf-8", "UTF-8", '"', "name",
        "boundary", "----=_Part_1.2", "filename", "a.pdf", "*", "0*", "'", "%E2%82%AC", "@",
        ",", ":", "?", "[", "]", "<", ">", "(c)", "\\", '"a b"', '""', '"a\\"b"',
        '"=?utf-8?q?r=C3=A9?="', "=?utf-8?q?x?=", "caf\udce9", "é", "{", "~", "!", "#",
    ]),
    max_size=16,
).map("".join)


@settings(deadline=None, max_examples=400)
@given(mime_pieces, st.sampled_from([
    "Content-Type", "Content-Disposition", "Content-Transfer-Encoding", "MIME-Version",
]))
def test_mime_headers_read_as_the_stdlib_reads_them(value: str, name: str) -> None:
    assert ours(name, value) == stdlib_text(name, value)


params = st.lists(
    st.tuples(
        st.sampled_from(["charset", "boundary", "name", "Filename", "format", "x-y"]),
        st.one_of(
            st.from_regex(r"[A-Za-z0-9._+-]{1,12}", fullmatch=True),
            st.from_regex(r'"[\t !#-\[\]-~]{0,16}"', fullmatch=True),
        ),
        st.sampled_from(["", " ", "\t", "  "]),
    ),
    max_size=4,
)


@settings(deadline=None, max_examples=400)
@given(st.sampled_from(["text/plain", "multipart/mixed", " Text/HTML ", "attachment",
                        "inline", "image/png"]), params)
def test_plain_parameters_are_rendered_as_the_stdlib_renders_them(
    kind: str, pairs: list[tuple[str, str, str]]
) -> None:
    value = kind + "".join(f";{ws}{name}{ws}={ws}{text}{ws}" for name, text, ws in pairs)
    for name in ("Content-Type", "Content-Disposition"):
        assert ours(name, value) == stdlib_text(name, value)
    if "/" in kind and len({n for n, _, _ in pairs}) == len(pairs):
        # The common form really takes the cheap path (no stdlib parse).
        assert mime_text(value, content_type=True) == stdlib_text("Content-Type", value)


@settings(deadline=None, max_examples=300)
@given(st.text(max_size=40))
def test_subjects_round_trip_through_rfc_2047(subject: str) -> None:
    encoded = unfolded(Header(subject, "utf-8").encode())  # as the policy reads it
    assert unstructured_text(encoded) == stdlib_text("Subject", encoded)
    if subject.strip() and subject == " ".join(subject.split()) and subject.isprintable():
        assert " ".join(unstructured_text(encoded).split()) == subject


@settings(deadline=None, max_examples=300)
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")),
               max_size=30))
def test_display_names_round_trip_through_formataddr(name: str) -> None:
    value = formataddr((name, "ann@customer.example"))
    raw = f"From: {value}\r\nSubject: {value}\r\n\r\nhi\r\n".encode()
    parsed = parse_email(raw)
    assert parsed.from_addr == "ann@customer.example"
    if name == " ".join(name.split()):
        assert parsed.from_name == name
    assert parsed.subject == " ".join(stdlib_text("Subject", value).split())


unstructured_pieces = st.lists(
    st.sampled_from(["Re:", " ", "\t", "=?utf-8?q?Caf=C3=A9?=", "=?utf-8?b?w6k=?=", "=?",
                     "?=", "x", "caf\udce9", "\udcc3\udca9", "=?bogus?q?a?=", "(c)", '"q"']),
    max_size=12,
).map("".join)


@settings(deadline=None, max_examples=400)
@given(unstructured_pieces, st.sampled_from(["Subject", "References", "X-Autoreply"]))
def test_unstructured_headers_read_as_the_stdlib_reads_them(value: str, name: str) -> None:
    assert ours(name, value) == stdlib_text(name, value)


message_ids = st.one_of(
    st.from_regex(r"[ \t]?<[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{0,12}@[A-Za-z0-9.=-]{0,12}>[ \t]?",
                  fullmatch=True),
    st.lists(st.sampled_from(["<", ">", "@", "a", ".", " ", "(c)", '"q"', "[1.2]", "=?x?=",
                              "\udce9"]), max_size=10).map("".join),
)


@settings(deadline=None, max_examples=400)
@given(message_ids)
def test_message_ids_read_as_the_stdlib_reads_them(value: str) -> None:
    assert ours("Message-ID", value) == stdlib_text("Message-ID", value)


@pytest.mark.parametrize("value", [
    "Tue, 4 Mar 2025 12:00:00 -0500", "4 Mar 2025 12:00:00", "Tue, 4 Mar 2025 12:00:00 -0000",
    "garbage", "", "Tue, 31 Feb 2025 12:00:00 +0000", "Mon, 1 Jan 99999 00:00:00 +0000",
    "Tue, 4 Mar 2025 12:00:00 +9999", "1 Jan 0001 00:00:00 -2359", "x\udce9",
])
def test_dates_read_as_the_stdlib_reads_them(value: str) -> None:
    assert ours("Date", value) == stdlib_text("Date", value)
    if stdlib_text("Date", value).startswith("raised"):
        return
    assert date_text(value) == stdlib_text("Date", value)


def test_the_policy_bounds_and_unfolds_before_reading() -> None:
    words = " ".join(["=?utf-8?q?a?="] * 500)
    assert VALUES.header_fetch_parse("Subject", words) == "a" * 100
    assert VALUES.header_fetch_parse("Content-Type", 'text/plain;\r\n charset="utf-8"') == (
        'text/plain; charset="utf-8"'
    )
    assert unfolded("a\r\n b\n c\rd") == "a b cd"
