"""The decoded bytes of one MIME part, read in pieces.

A :class:`PartBody` either holds bytes already decoded or points at the part's encoded body
inside the raw message and decodes it chunk by chunk when read: a 25 MiB attachment can be
hashed and written to the blob store without its decoded bytes (or its base64 text) ever
being whole in memory. Only encodings that decode piecewise to exactly what the stdlib's
one-piece decoding gives are read this way (see :meth:`PartBody.of_span`); anything that
needs the stdlib's repairs is decoded by the stdlib up front and held as bytes.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator

# Decoded pieces are about this size: large enough that the per-call overhead vanishes,
# small next to any message worth streaming.
CHUNK = 256 * 1024
# A base64 body with nothing to repair: the alphabet in lines, padding only at the end.
_CLEAN_BASE64 = re.compile(rb"[A-Za-z0-9+/\r\n]*={0,2}[\r\n]*")
_IDENTITY, _BASE64, _QP = "", "base64", "quoted-printable"
_LINE_BREAK_BYTES = (0x0D, 0x0A)
# What get_payload(decode=True) decodes; any other transfer encoding is returned as sent.
_DECODED_BY_STDLIB = ("quoted-printable", "base64", "x-uuencode", "uuencode", "uue", "x-uue")


class PartBody:
    """A part's decoded bytes: :meth:`chunks` reads them in pieces, :meth:`read` whole."""

    __slots__ = ("_encoding", "_end", "_source", "_start")

    def __init__(self, source: bytes, start: int = 0, end: int | None = None,
                 encoding: str = _IDENTITY) -> None:
        self._source = source
        self._start = start
        self._end = len(source) if end is None else end
        self._encoding = encoding

    @classmethod
    def of_span(cls, data: bytes, start: int, end: int, cte: str) -> PartBody | None:
        """The body ``data[start:end]`` sent with transfer encoding ``cte`` (the header's
        value as ``get_payload`` reads it), decoded lazily; None when the stdlib must decode
        it (uuencode, or base64 with anything to repair) so its repairs and defects apply."""
        if cte.strip() == _BASE64:
            if not _CLEAN_BASE64.fullmatch(data, start, end):
                return None
            letters = end - start - data.count(b"\r", start, end) - data.count(b"\n", start, end)
            if letters % 4:
                return None  # a partial last quantum: the stdlib repairs it and says so
            return cls(data, start, end, _BASE64)
        if cte == _QP:
            # Without "=" quoted-printable decodes to itself (binascii.a2b_qp changes nothing
            # else): read in place, so a large text body is decoded to str without first
            # being copied whole as bytes.
            if data.find(b"=", start, end) < 0:
                return cls(data, start, end, _IDENTITY)
            return cls(data, start, end, _QP)
        if cte in _DECODED_BY_STDLIB:
            return None
        return cls(data, start, end, _IDENTITY)

    def chunks(self, size: int = CHUNK) -> Iterator[bytes | memoryview]:
        """The decoded bytes in order, about ``size`` at a time."""
        if self._encoding == _BASE64:
            yield from self._base64(size)
        elif self._encoding == _QP:
            yield from self._quoted_printable(size)
        else:
            view = memoryview(self._source)
            for at in range(self._start, self._end, size):
                yield view[at : min(at + size, self._end)]

    def view(self) -> bytes | memoryview:
        """All the decoded bytes; a view into the message, without a copy, when the part was
        sent as it is."""
        if self._encoding == _IDENTITY:
            if self._start == 0 and self._end == len(self._source):
                return self._source
            return memoryview(self._source)[self._start : self._end]
        return self.read()

    def read(self) -> bytes:
        """All the decoded bytes, as one new ``bytes``."""
        if self._encoding == _IDENTITY:
            return bytes(self.view())
        return b"".join(self.chunks())

    def _base64(self, size: int) -> Iterator[bytes]:
        # Each piece ends after a whole number of quanta (four letters; line breaks, which
        # the decoder skips, do not count), so it decodes alone; clean input has padding
        # only at its very end. The pieces are views: nothing is copied before decoding.
        source, at, end = self._source, self._start, self._end
        view = memoryview(source)
        while at < end:
            cut = _quanta_end(source, at, min(at + size, end), end)
            yield binascii.a2b_base64(view[at:cut])
            at = cut

    def _quoted_printable(self, size: int) -> Iterator[bytes]:
        # Quoted-printable decodes line by line (a soft break is "=" before the line's end),
        # so pieces cut just after a newline decode to what the whole body decodes to.
        at, end, source = self._start, self._end, self._source
        while at < end:
            cut = source.rfind(b"\n", at, min(at + size, end)) + 1
            if cut <= at:
                cut = source.find(b"\n", at, end) + 1 or end
            yield binascii.a2b_qp(memoryview(source)[at:cut])
            at = cut

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PartBody):
            return NotImplemented
        return self.read() == other.read()

    def __hash__(self) -> int:
        return hash(self.read())


def _quanta_end(source: bytes, start: int, cut: int, end: int) -> int:
    """Where a base64 piece from ``start`` may end, near ``cut``: just after a multiple of
    four letters (back from ``cut``; forward when that leaves none), or at ``end``."""
    if cut >= end:
        return end
    extra = (cut - start - source.count(b"\r", start, cut) - source.count(b"\n", start, cut)) % 4
    while extra and cut > start:
        cut -= 1
        if source[cut] not in _LINE_BREAK_BYTES:
            extra -= 1
    if cut > start:
        return cut
    letters = 0
    while cut < end and (letters == 0 or letters % 4):
        if source[cut] not in _LINE_BREAK_BYTES:
            letters += 1
        cut += 1
    return cut
