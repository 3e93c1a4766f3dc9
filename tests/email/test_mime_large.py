"""Parsing a large message holds a small multiple of its size, and parsing it in slices
gives exactly what the stdlib's one-piece parse gives."""

from __future__ import annotations

import random
import tracemalloc
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from pathlib import Path

from casebridge_email.attachments import attachment_path, store_attachments
from casebridge_email.mime import MAX_DEPTH, _clean_base64, _parse_bytes, parse_email
from casebridge_email.mime_outline import outline
from hypothesis import given
from hypothesis import strategies as st


def shape(msg: Message) -> list[tuple[object, ...]]:
    return [(part.get_content_type(), [(k, str(v)) for k, v in part.items()],
             part.get_payload() if not part.is_multipart() else None,
             [type(d).__name__ for d in part.defects]) for part in msg.walk()]


def big_message(size: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Ann <ann@example.org>"
    msg["To"] = "support@example.com"
    msg["Subject"] = "crash dump"
    msg.set_content("The dump is attached.\n")
    msg.add_attachment(random.Random(4).randbytes(size), maintype="application",
                       subtype="octet-stream", filename="crash.dump")
    return msg.as_bytes(policy=policy.SMTP)


lines = st.lists(st.sampled_from([
    b"From: Ann <ann@example.org>", b"Subject: =?utf-8?q?caf=C3=A9?=", b"To: s@example.com",
    b"Content-Type: multipart/mixed; boundary=XX", b"Content-Type: text/plain; charset=utf-8",
    b"Content-Transfer-Encoding: base64", b"Content-Transfer-Encoding: quoted-printable",
    b"MIME-Version: 1.0", b"", b"--XX", b"--XX--", b"aGVsbG8gd29ybGQ=", b"caf=C3=A9 =\r",
    b"\xc3\xa9t\xe9 \xff", b" folded continuation", b"plain text line",
]), max_size=30)


@given(lines, st.sampled_from([b"\r\n", b"\n"]), st.integers(min_value=1, max_value=40))
def test_sliced_parse_equals_the_stdlib_parse(body: list[bytes], eol: bytes, chunk: int) -> None:
    data = eol.join(body)
    expected = BytesParser(policy=policy.default).parsebytes(data)
    assert shape(_parse_bytes(data, chunk)) == shape(expected)


def base64_part(body: str) -> Message:
    raw = ("Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
           "\r\n" + body)
    return BytesParser(policy=policy.default).parsebytes(raw.encode("ascii"))


@given(st.binary(max_size=300), st.integers(min_value=4, max_value=80),
       st.sampled_from(["\r\n", "\n"]))
def test_clean_base64_decodes_like_the_stdlib(data: bytes, width: int, eol: str) -> None:
    import base64

    encoded = base64.b64encode(data).decode()
    body = eol.join(encoded[i:i + width] for i in range(0, len(encoded), width)) + eol
    part = base64_part(body)
    assert part.get_payload(decode=True) == data
    got = _clean_base64(part)
    # Encoders wrap at a multiple of 4 (76); other widths may split the padding over two
    # lines, which is left to the stdlib.
    assert got == data if width % 4 == 0 else got in (None, data)


@given(st.text(alphabet="AQgw+/=\r\n -*", max_size=60))
def test_clean_base64_leaves_anything_to_repair_to_the_stdlib(body: str) -> None:
    part = base64_part(body)
    got = _clean_base64(part)
    if got is not None:
        assert got == part.get_payload(decode=True)
        assert not part.defects


def test_a_large_attachment_is_parsed_within_a_small_multiple_of_its_size() -> None:
    data = big_message(4 * 1024 * 1024)
    tracemalloc.start()
    try:
        parsed = parse_email(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert parsed.attachments[0].data == random.Random(4).randbytes(4 * 1024 * 1024)
    # The stdlib's one-piece parse and base64 decoding peaked near 8x the message.
    assert peak < 4 * len(data), peak / len(data)


def test_a_large_attachment_reaches_the_blob_store_without_a_whole_copy(
    tmp_path: Path,
) -> None:
    size = 8 * 1024 * 1024
    data = big_message(size)
    tracemalloc.start()
    try:
        parsed = parse_email(data)
        (stored,), _ = store_attachments(parsed.attachments, tmp_path, max_bytes=size,
                                         max_count=5)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert attachment_path(tmp_path, stored).read_bytes() == random.Random(4).randbytes(size)
    # Decoded a piece at a time: neither the base64 text nor the bytes are ever whole.
    assert peak < len(data) // 2, peak / len(data)


def test_a_large_text_body_is_decoded_once() -> None:
    line = "the printer shows error E42 after the firmware update and will not print"
    msg = EmailMessage()
    msg["From"] = "ann@example.org"
    msg.set_content("\n".join([line] * 100_000) + "\n", cte="7bit")
    data = msg.as_bytes(policy=policy.SMTP)
    tracemalloc.start()
    try:
        parsed = parse_email(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert parsed.text.startswith(line) and len(parsed.text) > 100_000 * len(line)
    # The text itself, and not the payload string, bytes and text the stdlib goes through.
    assert peak < 1.3 * len(parsed.text), peak / len(parsed.text)


def test_a_large_message_outlined_reads_as_the_stdlib_reads_it() -> None:
    msg = EmailMessage()
    msg["From"] = "Ann <ann@example.org>"
    msg["Subject"] = "=?utf-8?q?caf=C3=A9?= logs"
    msg.set_content("Caf\u00e9 log line with trailing space \n" * 20_000)
    msg.add_alternative("<p>Caf\u00e9</p>\n" * 20_000, subtype="html")
    msg.add_attachment(random.Random(5).randbytes(300_000), maintype="image",
                       subtype="png", filename="shot.png")
    msg.add_attachment("a,b\n1,2\n" * 20_000, subtype="csv", filename="t.csv")
    data = msg.as_bytes(policy=policy.SMTP)
    assert outline(data, max_depth=MAX_DEPTH) is not None
    outlined = parse_email(data, outline_bytes=0)
    assert outlined == parse_email(data, outline_bytes=len(data) + 1)
    assert outlined.text.startswith("Café log line") and len(outlined.attachments) == 2
