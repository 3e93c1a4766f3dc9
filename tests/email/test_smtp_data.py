"""The DATA section read in blocks (``casebridge_email.smtp_data``) against a line-by-line
reading that follows aiosmtpd's own rules, for any message cut into any blocks."""

from __future__ import annotations

import pytest
from casebridge_email.smtp_data import DataSection, DataState
from hypothesis import given
from hypothesis import strategies as st


def stuffed(lines: list[bytes]) -> bytes:
    """The DATA stream a client sends for these lines (no CRLF inside any), RFC 5321
    §4.5.2: a leading dot doubled, then the terminating line."""
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n"
                    for line in lines) + b".\r\n"


def line_by_line(stream: bytes, size_limit: int | None, line_limit: int
                 ) -> tuple[DataState, bytes]:
    """aiosmtpd's smtp_DATA over a whole stream: each CRLF-ended line counted before the
    terminator, checked against the limits, unstuffed."""
    state, data, size = DataState.NOMINAL, [], 0
    lines = stream.split(b"\r\n")[:-1]
    for text in lines:
        line = text + b"\r\n"
        if line == b".\r\n":
            break
        size += len(line)
        if state is DataState.NOMINAL and size_limit and size > size_limit:
            state = DataState.TOO_MUCH
        if state is DataState.NOMINAL and len(line) > line_limit:
            state = DataState.TOO_LONG
        data.append(line[1:] if line.startswith(b".") else line)
    return state, b"".join(data) if state is DataState.NOMINAL else b""


def in_blocks(stream: bytes, cuts: list[int]) -> tuple[DataState, bytes]:
    section = DataSection(size_limit, line_limit)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {len(stream)})
    start, done = 0, False
    for point in points:
        if point > start:
            assert not done, "fed after the end"
            done = section.feed(stream[start:point])
            start = point
    assert done
    return section.state, section.content() if section.state is DataState.NOMINAL else b""


size_limit, line_limit = 400, 60

text = st.binary(max_size=80).filter(lambda b: b"\r\n" not in b)
dotted = st.builds(lambda body: b"." + body, text)


@given(st.lists(st.one_of(text, dotted, st.just(b""), st.just(b"..")), max_size=12),
       st.lists(st.integers(min_value=0, max_value=2_000), max_size=12))
def test_blocks_read_the_section_as_lines_would(lines: list[bytes], cuts: list[int]) -> None:
    stream = stuffed(lines)
    assert in_blocks(stream, cuts) == line_by_line(stream, size_limit, line_limit)


@given(st.lists(text, max_size=6), st.lists(st.integers(0, 500), max_size=6))
def test_a_nominal_section_is_the_message_as_written(lines: list[bytes], cuts: list[int]
                                                     ) -> None:
    stream = stuffed(lines)
    state, content = in_blocks(stream, cuts)
    if state is DataState.NOMINAL:
        assert content == b"".join(line + b"\r\n" for line in lines)


def test_the_terminator_is_a_line_of_its_own() -> None:
    section = DataSection(None, 1000)
    assert not section.feed(b"Subject: x\r\n\r\nsee you.\r\n")  # "." ends a line, not one
    assert not section.feed(b"..\r\n")  # a stuffed "." line
    assert section.feed(b".\r\n")
    assert section.content() == b"Subject: x\r\n\r\nsee you.\r\n.\r\n"
    empty = DataSection(None, 1000)
    assert empty.feed(b".\r\n") and empty.content() == b""


def test_limits_drop_the_data_and_say_which() -> None:
    big = DataSection(10, 1000)
    assert not big.feed(b"0123456789ab\r\n")
    assert big.state is DataState.TOO_MUCH and big.feed(b".\r\n")
    with pytest.raises(ValueError, match="over the size limit"):
        big.content()
    long = DataSection(None, 8)
    long.feed(b"0123456")  # no CRLF yet: still within the limit
    assert long.state is DataState.NOMINAL
    long.feed(b"78")
    assert long.state is DataState.TOO_LONG
    exact = DataSection(5, 8)  # the limit counts the body, not the terminating line
    assert exact.feed(b"abc\r\n.\r\n") and exact.content() == b"abc\r\n"
