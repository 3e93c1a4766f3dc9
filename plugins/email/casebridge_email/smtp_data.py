"""The DATA section of an SMTP transaction, taken in blocks rather than line by line.

RFC 5321 §4.1.1.4: the section ends at a line holding only ".", and §4.5.2: a line that
starts with "." was sent with one more, which the receiver removes. aiosmtpd reads the
section one line at a time, an awaited read and a pass of its loop per line: some 130 per
ordinary message, most of the SMTP server's CPU in a burst. :class:`DataSection` takes the
blocks a stream reader gives up to each ``.\\r\\n`` (or up to its buffer limit) and keeps
aiosmtpd's rules: the size limit counts the bytes as sent, before the terminating line; a
line (with its CRLF) longer than the line limit fails the message; after either, the rest
is read and dropped, so the answer comes once the client has finished sending.
"""

from __future__ import annotations

import enum

__all__ = ["DataSection", "DataState"]

_END = b"\r\n.\r\n"


class DataState(enum.Enum):
    NOMINAL = "nominal"
    TOO_LONG = "a line over the line limit"
    TOO_MUCH = "over the size limit"


class DataSection:
    """One DATA section, fed block by block with :meth:`feed` until it returns True."""

    def __init__(self, size_limit: int | None, line_limit: int) -> None:
        self._size_limit = size_limit
        self._line_limit = line_limit
        self._data = bytearray()
        self._size = 0  # bytes received, the terminating line included
        self._line = 0  # length of the line being received, so far
        self._cr = False  # the last block ended with a CR: a LF next ends that line
        self._tail = b""  # the stream's last bytes, to see the end across blocks
        self.state = DataState.NOMINAL

    def feed(self, block: bytes) -> bool:
        """Take the next bytes of the section; True once they ended it (the terminating
        line is the end of ``block``: the reader cut its blocks there)."""
        self._size += len(block)
        self._measure_lines(block)
        tail = block[-len(_END):] if len(block) >= len(_END) else (self._tail + block)[-len(_END):]
        self._tail = tail
        done = tail.endswith(_END) or (self._size == 3 and tail == b".\r\n")
        if self.state is DataState.NOMINAL:
            body = self._size - 3 if done else self._size
            if self._size_limit and body > self._size_limit:
                self._fail(DataState.TOO_MUCH)
            else:
                self._data += block
        return done

    def content(self) -> bytes:
        """The message as sent, its terminating line gone and dot-stuffing undone; only
        for a section in the NOMINAL state."""
        if self.state is not DataState.NOMINAL:
            raise ValueError(f"no content: the message was {self.state.value}")
        data = self._data
        del data[-3:]  # the ".\r\n"; the CRLF before it ends the last line
        if data.startswith(b"."):
            del data[0]
        content = bytes(data)
        self._data = bytearray()
        if b"\r\n." in content:
            content = content.replace(b"\r\n.", b"\r\n")
        return content

    def _measure_lines(self, block: bytes) -> None:
        if self.state is not DataState.NOMINAL:
            return
        if self._cr and block.startswith(b"\n"):  # a CRLF cut in two by the reader
            self._complete(self._line + 1)
            self._line, block = 0, block[1:]
        self._cr = block.endswith(b"\r")
        if b"\r\n" not in block:
            self._line += len(block)
            if self._line > self._line_limit:
                self._fail(DataState.TOO_LONG)
            return
        lines = block.split(b"\r\n")
        self._complete(self._line + len(lines[0]) + 2)
        longest = max(map(len, lines[1:-1]), default=0) + 2
        self._complete(longest if len(lines) > 2 else 0)
        self._line = len(lines[-1])
        if self._line > self._line_limit:
            self._fail(DataState.TOO_LONG)

    def _complete(self, length: int) -> None:
        if length > self._line_limit:
            self._fail(DataState.TOO_LONG)

    def _fail(self, state: DataState) -> None:
        if self.state is DataState.NOMINAL:
            self.state = state
            self._data = bytearray()  # dropped now: a refused message holds no memory
