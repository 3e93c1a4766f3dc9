"""The MIME tree of a well-formed message without copying its bodies.

The stdlib's parser keeps every part's body as a ``str`` (a full copy of the message) and
builds it from a list of lines (more than that again). :func:`outline` gives the same tree
of :class:`~email.message.Message` objects, with the same headers and defects (each header
block read as the stdlib's parser reads it, see :func:`header_block`), but leaves each leaf
part's payload empty and records where its body lies in the raw bytes instead
(:attr:`Outline.spans`), so that it can be decoded piecewise (:class:`~.part_body.PartBody`).

Only mail whose structure the stdlib reads without any repair is outlined: anything unusual
(a lone CR, a header block without its blank line, a multipart without its boundary lines
or with boundaries that overlap, a ``message/*`` part, nesting deeper than ``max_depth``)
returns None, and the caller falls back to the stdlib's parse, repairs and all. The bodies
found are exactly the stdlib's payloads: up to the next boundary line, without the line
break before it (RFC 2046 gives that to the boundary).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import errors
from email.message import Message

from .mime_headers import VALUES

# What the stdlib's feedparser takes for a header line (its headerRE, on bytes).
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")
# The rest of a boundary line after "--boundary": the feedparser's boundaryendRE.
_BOUNDARY_TAIL = re.compile(rb"(--)?[ \t]*(?:\r\n|\n|\Z)")
_LONE_CR = re.compile(rb"\r(?!\n)")
_MULTIPART_CTES = ("7bit", "8bit", "binary")


@dataclass
class Outline:
    """A message's tree; ``spans`` maps ``id(part)`` of each leaf to its body's
    ``(start, end)`` in the raw bytes."""

    root: Message
    spans: dict[int, tuple[int, int]] = field(default_factory=dict)


class _NotPlain(Exception):
    """The message needs the stdlib's parse (and its repairs)."""


def outline(data: bytes, *, max_depth: int) -> Outline | None:
    """The tree of ``data`` with bodies left in place, or None when the stdlib must parse
    it (see the module's docstring)."""
    if _LONE_CR.search(data):
        return None  # the stdlib splits lines on a lone CR too; not worth following
    spans: dict[int, tuple[int, int]] = {}
    try:
        root = _part(data, 0, len(data), spans, (), "", depth=0, max_depth=max_depth)
    except _NotPlain:
        return None
    return Outline(root, spans)


def _part(data: bytes, start: int, end: int, spans: dict[int, tuple[int, int]],
          boundaries: tuple[bytes, ...], parent_type: str, *, depth: int,
          max_depth: int) -> Message:
    """The part in ``data[start:end]`` (headers, then body); ``end`` is where the enclosing
    multipart's next boundary line starts (or the end of the message)."""
    if depth > max_depth:
        raise _NotPlain
    msg, body = _headers(data, start, end)
    if parent_type == "multipart/digest":
        msg.set_default_type("message/rfc822")
    maintype = msg.get_content_maintype()
    if maintype == "message":
        raise _NotPlain  # the stdlib parses the inner message; left to it
    if maintype == "multipart":
        children = _children(data, msg, body, end, spans, boundaries, depth=depth,
                             max_depth=max_depth)
        msg.set_payload(children)
        return msg
    if boundaries:
        # The line break before the boundary line belongs to the boundary.
        if data.endswith(b"\r\n", body, end):
            end -= 2
        elif data.endswith(b"\n", body, end):
            end -= 1
    spans[id(msg)] = (body, end)
    return msg


def _headers(data: bytes, start: int, end: int) -> tuple[Message, int]:
    """The part's headers, read as the stdlib reads them, and where its body starts."""
    at = start
    lines: list[str] = []
    while True:
        if at >= end:
            raise _NotPlain  # no blank line: the stdlib reads it some other way
        newline = data.find(b"\n", at, end)
        line_end = end if newline < 0 else newline + 1
        if line_end - at <= 2 and data[at:line_end] in (b"\n", b"\r\n"):
            break
        if not _HEADER_LINE.match(data, at, line_end) or (
            at != start and data.startswith(b"From ", at, line_end)
        ):
            raise _NotPlain  # a body without its blank line, or a stray envelope line
        lines.append(data[at:line_end].decode("ascii", "surrogateescape"))
        at = line_end
    return header_block(lines), line_end


def header_block(lines: list[str]) -> Message:
    """The message ``BytesParser(policy=VALUES).parsebytes(block, headersonly=True)`` gives
    for a header block of these ``lines`` (each with its line break; only the first may be
    an envelope ``From `` line), without a parser per part: the stdlib's
    ``FeedParser._parse_headers``, for the lines :func:`_headers` lets through."""
    msg = VALUES.message_factory(policy=VALUES)
    current: list[str] = []
    for number, line in enumerate(lines):
        if line[0] in " \t":
            if current:
                current.append(line)
            else:
                VALUES.handle_defect(msg, errors.FirstHeaderLineIsContinuationDefect(line))
            continue
        if current:
            msg.set_raw(*VALUES.header_source_parse(current))
            current = []
        if number == 0 and line.startswith("From "):
            msg.set_unixfrom(line.removesuffix("\n").removesuffix("\r"))
        elif line.startswith(":"):
            msg.defects.append(errors.InvalidHeaderDefect("Missing header name."))
        else:
            current = [line]
    if current:
        msg.set_raw(*VALUES.header_source_parse(current))
    msg.set_payload("")
    return msg


def _children(data: bytes, msg: Message, body: int, end: int,
              spans: dict[int, tuple[int, int]], boundaries: tuple[bytes, ...], *,
              depth: int, max_depth: int) -> list[Message]:
    """The parts of a multipart whose body is ``data[body:end]``: every one between its
    first boundary line and its closing one, which must both be there."""
    boundary = msg.get_boundary()
    cte = str(msg.get("content-transfer-encoding", "8bit")).lower()
    if boundary is None or cte not in _MULTIPART_CTES or not boundary.isascii():
        raise _NotPlain
    separator = b"--" + boundary.encode("ascii")
    if any(s.startswith(separator) or separator.startswith(s) for s in boundaries):
        raise _NotPlain  # which boundary a line closes would depend on the parser's order
    inner = (*boundaries, separator)
    lines = _boundary_lines(data, separator, body, end)
    first = next(lines, None)
    if first is None or first[2]:
        raise _NotPlain  # no opening boundary
    children: list[Message] = []
    at = first[1]
    for line_start, line_end, closing in lines:
        if line_start == at:
            raise _NotPlain  # two boundary lines in a row: the stdlib skips the second
        children.append(_part(data, at, line_start, spans, inner, msg.get_content_type(),
                              depth=depth + 1, max_depth=max_depth))
        if closing:
            return children
        at = line_end
    raise _NotPlain  # no closing boundary


def _boundary_lines(data: bytes, separator: bytes, start: int,
                    end: int) -> Iterator[tuple[int, int, bool]]:
    """``(start, end, closing)`` of each line in ``data[start:end]`` that is a boundary line
    for ``separator`` ("--" + boundary), in order."""
    at = start
    while True:
        found = data.find(separator, at, end)
        if found < 0:
            return
        if found == start or data[found - 1] == 0x0A:
            tail = _BOUNDARY_TAIL.match(data, found + len(separator), end)
            if tail:
                yield found, tail.end(), bool(tail.group(1))
                at = tail.end()
                continue
        at = found + 1
