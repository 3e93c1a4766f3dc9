"""parse_email on broken mail: a hand-made corpus of malformed MIME, and fuzzing."""

from __future__ import annotations

import pytest
from casebridge_email.header_limits import MAX_HEADER_CHARS
from casebridge_email.mime import ParsedEmail, parse_email
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

VALID = (
    b"From: Ann <ann@example.com>\r\nTo: support@example.com\r\nSubject: =?utf-8?q?H=C3=A9?=\r\n"
    b"Message-ID: <m1@example.com>\r\nReferences: <r1@x> <r2@y>\r\n"
    b"Date: Tue, 4 Mar 2025 12:00:00 -0500\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b'--b1\r\nContent-Type: multipart/alternative; boundary="b2"\r\n\r\n'
    b"--b2\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
    b"quoted-printable\r\n\r\nCaf=C3=A9 order 42\r\n"
    b"--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Caf\xc3\xa9 order 42</p>\r\n"
    b"--b2--\r\n"
    b"--b1\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@y\r\nSubject: inner\r\n\r\ninner\r\n"
    b"--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
    b'filename="a.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n'
    b"--b1--\r\n"
)

HEAD = b"From: a@example.com\nSubject: s\nMIME-Version: 1.0\n"


def _multipart(body: bytes, boundary: bytes = b"zz") -> bytes:
    return HEAD + b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\n\n' + body


def test_truncated_multipart_keeps_what_arrived() -> None:
    raw = _multipart(b"--zz\nContent-Type: text/plain\n\nfirst part\n--zz\nContent-Type: te")
    p = parse_email(raw)
    assert p.text == "first part"
    assert any("damaged" in n for n in p.notes)


def test_missing_boundary_parameter_reads_the_body_as_text() -> None:
    raw = (
        HEAD + b"Content-Type: multipart/mixed\n\n--zz\nContent-Type: text/plain\n\nhello\n--zz--\n"
    )
    p = parse_email(raw)
    assert "hello" in p.text
    assert any("missing boundary" in n for n in p.notes)


def test_boundary_never_used_in_body() -> None:
    p = parse_email(_multipart(b"just some words, no boundary at all\n", boundary=b"nothere"))
    assert p.attachments == ()
    assert isinstance(p.text, str)
    assert p.notes


def test_bad_base64_decodes_what_it_can_and_says_so() -> None:
    raw = HEAD + (
        b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
        b"aGVsbG8gd29ybGQ*!!=\n"
    )
    p = parse_email(raw)
    assert p.text.startswith("hello wor")
    assert any("damaged encoding" in n for n in p.notes)


def test_bad_base64_attachment_is_still_extracted() -> None:
    raw = _multipart(
        b"--zz\nContent-Type: text/plain\n\nbody\n--zz\nContent-Type: image/png\n"
        b"Content-Disposition: attachment; filename=x.png\nContent-Transfer-Encoding: base64\n\n"
        b"iVBORw0KGgo%%%===AAA\n--zz--\n"
    )
    p = parse_email(raw)
    (att,) = p.attachments
    assert att.name == "x.png" and att.data.startswith(b"\x89PNG")


def test_bogus_charset_in_body_and_headers() -> None:
    raw = (
        b"From: =?x-bogus?q?Zo=EB?= <z@example.com>\nSubject: =?no-such?B?SGk=?= there\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\n\nna\xefve caf\xe9\n"
    )
    p = parse_email(raw)
    assert p.from_addr == "z@example.com"
    assert "there" in p.subject
    assert "caf" in p.text and "ve" in p.text
    assert any(n.startswith("charset 'x-no-such-charset' unreadable; decoded as ") for n in p.notes)


def test_eight_bit_headers_are_decoded() -> None:
    raw = "From: Jürgen <j@example.com>\nSubject: Grüße\n\nbody\n".encode()
    p = parse_email(raw)
    assert (p.from_name, p.subject) == ("Jürgen", "Grüße")
    latin = "From: j@example.com\nSubject: Grüße\n\nbody\n".encode("latin-1")
    assert "Gr" in parse_email(latin).subject


def test_malformed_encoded_words_use_the_raw_value() -> None:
    raw = (
        b"From: =?utf-8?q?unterminated <u@example.com>\n"
        b"Subject: =?utf-8?b?!!!notbase64?= and =?utf-8?q?ok?=\n"
        b"To: =?=?==??\n\nb\n"
    )
    p = parse_email(raw)
    assert p.from_addr == "u@example.com"
    assert "and" in p.subject
    assert p.to == ()


def test_nested_rfc822_inside_rfc822() -> None:
    inner = b"From: c@x\nContent-Type: message/rfc822\n\nFrom: d@x\nSubject: deepest\n\ndeep text\n"
    raw = _multipart(
        b"--zz\nContent-Type: text/plain\n\nouter text\n--zz\nContent-Type: message/rfc822\n\n"
        + inner
        + b"--zz--\n"
    )
    p = parse_email(raw)
    assert p.text == "outer text"
    (eml,) = p.attachments
    assert eml.name.endswith(".eml") and b"deep text" in eml.data


def test_huge_header_line() -> None:
    raw = b"From: a@example.com\nSubject: " + b"x" * 2_000_000 + b"\nX-Long: " + b"y " * 100_000
    raw += b"\n\nbody\n"
    p = parse_email(raw)
    # Read up to the header bound, not further, and the cut is noted.
    assert p.subject == "x" * MAX_HEADER_CHARS
    assert f"header Subject is too long to read in full (2000000 characters; the first " \
        f"{MAX_HEADER_CHARS} were read)" in p.notes
    assert p.text == "body\n"


def test_deeply_nested_multiparts_stop_safely() -> None:
    depth = 200
    parts = b"".join(
        b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (i, i + 1) for i in range(depth)
    )
    raw = HEAD + b"Content-Type: multipart/mixed; boundary=b0\n\n" + parts + b"text at the bottom\n"
    p = parse_email(raw)
    assert isinstance(p, ParsedEmail)
    assert p.notes


def test_headers_only_and_empty() -> None:
    assert parse_email(b"") == ParsedEmail(content_type="text/plain")
    p = parse_email(b"From: a@b.example")
    assert p.from_addr == "a@b.example" and p.text == ""


def test_date_garbage_and_naive_dates() -> None:
    assert parse_email(b"Date: yesterday-ish\n\nb").date is None
    naive = parse_email(b"Date: Mon, 3 Feb 2025 10:00:00 -0000\n\nb").date
    assert naive is not None and naive.utcoffset() is not None
    assert parse_email(b"Date: Mon, 3 Feb 99999 10:00:00 +9999\n\nb").date is None


@pytest.mark.parametrize(
    "raw",
    [
        b"\x00\xff\xfe" * 100,
        b"Content-Type: multipart/mixed; boundary=\n\n--\n--\n",
        b'Content-Type: multipart/alternative; boundary="a"\n\n--a\n\n--a\n\n--a--',
        b"Content-Type: text/plain; charset*=utf-8''%ZZ\n\nx",
        b'Content-Type: text/plain; charset="\xff\xfe"\n\nx',
        b"Content-Transfer-Encoding: x-uuencode\n\nbegin 644 f\n`\nend\n",
        b"Content-Type: message/rfc822\n\n",
        b"Content-Type: message/partial; id=x; number=1\n\nabc",
        b"Content-Disposition: attachment; filename*=bogus''%FF%FE\n\nx",
        b'From: <>\nTo: ,,,@,<@>\nCc: "unterminated\n\nx',
        b"Message-ID: <<<>>>\nReferences: <a@b\nIn-Reply-To: \xff\n\nx",
        b"Content-Type: image/png; name=" + b"a" * 10000 + b"\n\nx",
    ],
)
def test_corpus_never_crashes(raw: bytes) -> None:
    p = parse_email(raw)
    assert p.size == len(raw)
    assert all(isinstance(n, str) for n in p.notes)


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    assert parse_email(raw).size == len(raw)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "flip", "cut"]))
        if op == "insert":
            data[at:at] = draw(
                st.sampled_from(
                    [b"\r\n", b"--b1", b"--b2--", b"=?", b"?=", b"\xff", b";", b'"', b"<", b"=\n"]
                )
                | st.binary(max_size=8)
            )
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 20))]
        elif op == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[at:]
    return bytes(data)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_valid_messages_never_raise(raw: bytes) -> None:
    p = parse_email(raw)
    assert isinstance(p.text, str) and isinstance(p.html, str)
    assert all(isinstance(a.data, bytes) for a in p.attachments)


def test_the_valid_base_message_parses_fully() -> None:
    p = parse_email(VALID)
    assert p.text == "Café order 42"
    assert p.html == "<p>Café order 42</p>"
    assert [a.content_type for a in p.attachments] == ["message/rfc822", "application/pdf"]
    assert p.date is not None and p.date.hour == 17
