"""Outlining a message (bodies left in place) gives the stdlib's tree, and a part's body read
in pieces gives the stdlib's decoded bytes."""

from __future__ import annotations

import base64
import binascii
import quopri
from email import policy
from email.message import Message
from email.parser import BytesParser

from casebridge_email.mime import MAX_DEPTH, parse_email
from casebridge_email.mime_headers import VALUES
from casebridge_email.mime_outline import _headers, _NotPlain, outline
from casebridge_email.part_body import PartBody
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EOLS = st.sampled_from([b"\r\n", b"\n"])
# Boundaries that prefix each other, and one with a space (quoted in the header).
BOUNDARIES = st.sampled_from([b"b1", b"b1x", b"b2", b"=_part", b"two words"])
RISKY_LINES = st.lists(st.sampled_from([
    b"plain text line", b"", b" ", b"--b1", b"--b1--", b"--b2 ", b"--b1x", b"-- ",
    b"From me", b"Subject: hi", b"aGVsbG8gd29ybGQ=", b"caf=C3=A9 =", b"\xc3\xa9t\xe9 \xff",
    b"--two words", b"--=_part--",
]), max_size=6)
BODY_LINES = st.one_of(st.lists(st.sampled_from([b"text", b"", b"  trailing  ", b"--b"]),
                                max_size=3), RISKY_LINES)
RISKY_HEADERS = st.lists(st.sampled_from([
    b"Content-Type: text/plain; charset=utf-8", b"Content-Type: text/html",
    b"Content-Transfer-Encoding: base64", b"Content-Transfer-Encoding: quoted-printable",
    b"Content-Disposition: attachment; filename=a.bin", b"X-Folded: one", b" two",
    b"Content-Type: message/rfc822", b"From x", b"not a header",
]), max_size=3)
HEADERS = st.one_of(st.lists(st.sampled_from([b"Content-Type: text/plain", b"X-A: b"]),
                             max_size=2), RISKY_HEADERS)


def leaf() -> st.SearchStrategy[tuple[object, ...]]:
    return st.tuples(st.just("leaf"), HEADERS, BODY_LINES)


def node(children: st.SearchStrategy[tuple[object, ...]]) -> st.SearchStrategy[tuple[object, ...]]:
    return st.tuples(st.just("multi"), st.sampled_from(["mixed", "alternative", "digest"]),
                     BOUNDARIES, st.lists(children, max_size=3), BODY_LINES, BODY_LINES,
                     st.sampled_from([True, True, True, False]))


TREES = st.recursive(leaf(), node, max_leaves=6)


def render(tree: tuple[object, ...], eol: bytes) -> list[bytes]:
    """The lines of a part: well-formed, except what the random lines put in it."""
    if tree[0] == "leaf":
        _, headers, body = tree
        return [*headers, b"", *body]  # type: ignore[misc]
    _, subtype, boundary, children, preamble, epilogue, closed = tree
    lines = [b'Content-Type: multipart/' + subtype.encode() + b'; boundary="' + boundary + b'"',
             b"", *preamble]  # type: ignore[union-attr, operator, misc]
    for child in children:  # type: ignore[union-attr]
        lines += [b"--" + boundary, *render(child, eol)]  # type: ignore[operator]
    if closed:
        lines += [b"--" + boundary + b"--", *epilogue]  # type: ignore[operator, misc]
    return lines


def stdlib(data: bytes) -> Message:
    return BytesParser(policy=policy.default).parsebytes(data)


def shape(msg: Message) -> list[tuple[object, ...]]:
    return [(part.get_content_type(), [(k, str(v)) for k, v in part.items()],
             part.get_payload() if not part.is_multipart() else None,
             [type(d).__name__ for d in part.defects]) for part in msg.walk()]


def outlined_shape(data: bytes) -> list[tuple[object, ...]] | None:
    found = outline(data, max_depth=MAX_DEPTH)
    if found is None:
        return None
    for part in found.root.walk():
        span = found.spans.get(id(part))
        if span is not None:
            part.set_payload(data[span[0]:span[1]].decode("ascii", "surrogateescape"))
        else:
            assert part.is_multipart()
    return shape(found.root)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(TREES, EOLS, st.booleans())
def test_an_outline_is_the_stdlib_tree(tree: tuple[object, ...], eol: bytes,
                                       final_eol: bool) -> None:
    data = eol.join([b"From: a@example.com", b"MIME-Version: 1.0", *render(tree, eol)])
    data += eol if final_eol else b""
    got = outlined_shape(data)
    if got is not None:
        assert got == shape(stdlib(data))


LINES = st.lists(st.sampled_from([
    b"From: Ann <ann@example.org>", b"Subject: =?utf-8?q?caf=C3=A9?=", b"To: s@example.com",
    b"Content-Type: multipart/mixed; boundary=XX", b"Content-Type: text/plain; charset=utf-8",
    b"Content-Transfer-Encoding: base64", b"Content-Transfer-Encoding: quoted-printable",
    b"MIME-Version: 1.0", b"", b"--XX", b"--XX--", b"aGVsbG8gd29ybGQ=", b"caf=C3=A9 =\r",
    b"\xc3\xa9t\xe9 \xff", b" folded continuation", b"plain text line",
]), max_size=30)


@given(LINES, EOLS)
def test_any_lines_outline_to_the_stdlib_tree_or_not_at_all(lines: list[bytes],
                                                            eol: bytes) -> None:
    data = eol.join(lines)
    got = outlined_shape(data)
    if got is not None:
        assert got == shape(stdlib(data))


WELL_FORMED = (
    b"From: Ann <ann@example.com>\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\npreamble\r\n'
    b'--b1\r\nContent-Type: multipart/alternative; boundary="b2"\r\n\r\n'
    b"--b2\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
    b"quoted-printable\r\n\r\nCaf=C3=A9 order 42\r\n"
    b"--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Caf\xc3\xa9 order 42</p>\r\n"
    b"--b2--\r\n"
    b"--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
    b'filename="a.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n'
    b"--b1--\r\nepilogue\r\n"
)


def test_well_formed_mail_is_outlined_and_parses_as_before() -> None:
    assert outlined_shape(WELL_FORMED) == shape(stdlib(WELL_FORMED))
    assert parse_email(WELL_FORMED, outline_bytes=0) == parse_email(WELL_FORMED)
    parsed = parse_email(WELL_FORMED, outline_bytes=0)
    assert parsed.text == "Café order 42\r\n" or parsed.text == "Café order 42"
    assert parsed.attachments[0].data == b"%PDF-1.4"


def test_unusual_structure_is_left_to_the_stdlib() -> None:
    for broken in (
        WELL_FORMED.replace(b"--b1--", b"--b1-x"),  # no closing boundary
        WELL_FORMED.replace(b'boundary="b2"', b""),  # no boundary parameter
        WELL_FORMED.replace(b"\r\n--b2\r\nContent-Type: text/html", b"\r--b2\r\nContent-"
                            b"Type: text/html"),  # a lone CR
        WELL_FORMED.replace(b"application/pdf", b"message/rfc822"),
    ):
        assert outline(broken, max_depth=MAX_DEPTH) is None
        assert parse_email(broken, outline_bytes=0) == parse_email(broken)
    deep = b"".join(b'Content-Type: multipart/mixed; boundary="d%d"\n\n--d%d\n' % (i, i)
                    for i in range(MAX_DEPTH + 2))
    assert outline(deep, max_depth=MAX_DEPTH) is None


def encoded_part(cte: str, body: bytes) -> Message:
    return stdlib(b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: "
                  + cte.encode() + b"\r\n\r\n" + body)


@given(st.binary(max_size=400), st.sampled_from([4, 8, 76]), EOLS,
       st.integers(min_value=1, max_value=64))
def test_base64_read_in_pieces_is_the_stdlib_decoding(data: bytes, width: int, eol: bytes,
                                                      piece: int) -> None:
    encoded = base64.b64encode(data)
    body = eol.join(encoded[i:i + width] for i in range(0, len(encoded), width)) + eol
    part = PartBody.of_span(body, 0, len(body), "base64")
    assert part is not None
    assert b"".join(part.chunks(piece)) == data == encoded_part("base64", body).get_payload(
        decode=True)


@given(st.binary(max_size=300), st.booleans(), EOLS, st.integers(min_value=1, max_value=64))
def test_quoted_printable_read_in_pieces_is_the_stdlib_decoding(
    data: bytes, quotetabs: bool, eol: bytes, piece: int
) -> None:
    body = quopri.encodestring(data, quotetabs=quotetabs).replace(b"\n", eol)
    part = PartBody.of_span(body, 0, len(body), "quoted-printable")
    assert part is not None
    expected = encoded_part("quoted-printable", body).get_payload(decode=True)
    assert b"".join(part.chunks(piece)) == expected == binascii.a2b_qp(body)


@given(st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"")), st.text(
    alphabet="AQgw+/=\r\n -*", max_size=40), st.integers(min_value=1, max_value=64))
def test_any_body_reads_in_pieces_as_the_stdlib_decodes_it_or_goes_to_the_stdlib(
    raw: bytes, b64: str, piece: int
) -> None:
    for cte, body in (("7bit", raw), ("quoted-printable", raw), ("base64", b64.encode())):
        part = PartBody.of_span(body, 0, len(body), cte)
        if part is not None:
            expected = encoded_part(cte, body).get_payload(decode=True)
            # The stdlib's parse drops a final CR of a body that ends in one; ours has none.
            assert b"".join(part.chunks(piece)) == expected
            assert part.read() == expected


def test_a_part_read_from_the_message_is_not_copied_until_asked() -> None:
    data = b"header\r\n\r\nbody bytes"
    body = PartBody.of_span(data, 10, len(data), "8bit")
    assert body is not None
    view = body.view()
    assert isinstance(view, memoryview) and view.obj is data and bytes(view) == b"body bytes"


@given(st.binary(max_size=300).map(lambda b: b.replace(b"=", b"").replace(b"\r", b"")))
def test_quoted_printable_without_equals_signs_is_read_in_place(raw: bytes) -> None:
    data = b"header\r\n\r\n" + raw
    body = PartBody.of_span(data, 10, len(data), "quoted-printable")
    assert body is not None
    view = body.view()
    expected = encoded_part("quoted-printable", raw).get_payload(decode=True)
    assert bytes(view) == expected == binascii.a2b_qp(raw)
    if raw:
        assert isinstance(view, memoryview) and view.obj is data


def test_a_body_in_place_decodes_with_any_declared_charset() -> None:
    for charset in (b"utf-8", b"latin-1", b"windows-1252", b"punycode", b"utf-8-sig",
                    b"idna", b"utf-16", b"x-bogus"):
        raw = WELL_FORMED.replace(b"text/plain; charset=utf-8",
                                  b"text/plain; charset=" + charset)
        assert parse_email(raw, outline_bytes=0) == parse_email(raw), charset


HEADER_LINES = st.lists(st.sampled_from([
    b"Subject: hi", b"From x@y Mon Jan  1 00:00:00 2024", b"From: a@b", b" folded", b"\tfolded",
    b":no name", b"X-A:", b"X-B: caf\xc3\xa9 \xff", b"Content-Type: text/plain;",
    b"  charset=utf-8", b"A:b", b"Weird\x0bName: v\x0c", b"X-Y:  spaced  ",
]), min_size=1, max_size=8)


@given(HEADER_LINES, EOLS)
def test_a_header_block_reads_as_the_stdlibs_headers_only_parse(lines: list[bytes],
                                                                eol: bytes) -> None:
    data = eol.join([*lines, b"", b"body"])
    try:
        msg, body = _headers(data, 0, len(data))
    except _NotPlain:
        return  # left to the stdlib
    assert data[body:] == b"body"
    ref = BytesParser(policy=VALUES).parsebytes(data[:body], headersonly=True)
    assert type(msg) is type(ref)
    assert list(msg.raw_items()) == list(ref.raw_items())
    assert [repr(d) for d in msg.defects] == [repr(d) for d in ref.defects]
    assert (msg.get_unixfrom(), msg.get_payload()) == (ref.get_unixfrom(), ref.get_payload())
