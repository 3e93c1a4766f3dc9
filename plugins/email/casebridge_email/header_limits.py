"""Bounds on how much of one header the parser reads. Pure; nothing here does I/O.

The standard library's header parser (``email.policy.default``) is quadratic in the number
of RFC 2047 encoded words and slow per character: one folded Subject of 12,000 encoded words
took ten seconds, 20,000 took 47. Real headers are far below these bounds (a Subject has a
handful of encoded words, a long References header a few KiB); past them the rest of the
header is not read, and the caller notes it. :class:`.mime_headers.ValuePolicy` applies them to
every header fetched, nested parts' ``Content-Type`` (read while parsing) included.
"""

from __future__ import annotations

# Characters of one header value that are parsed at most.
MAX_HEADER_CHARS = 16 * 1024
# RFC 2047 encoded words of one header value that are decoded at most.
MAX_ENCODED_WORDS = 100
_WORD_START = "=?"


def bounded(value: str) -> str:
    """``value`` cut before its ``MAX_HEADER_CHARS``-th character and before its encoded word
    number ``MAX_ENCODED_WORDS + 1``; ``value`` itself when it is within both bounds."""
    cut = value[:MAX_HEADER_CHARS]
    position = -1
    for _ in range(MAX_ENCODED_WORDS + 1):
        position = cut.find(_WORD_START, position + 1)
        if position < 0:
            return cut
    return cut[:position].rstrip()


def is_bounded(value: str) -> bool:
    """True when :func:`bounded` would cut ``value``."""
    return len(value) > MAX_HEADER_CHARS or value.count(_WORD_START) > MAX_ENCODED_WORDS


def cut_note(name: str, value: str) -> str:
    """The note for a header :func:`bounded` cut: what was over which bound."""
    words = value.count(_WORD_START)
    if words > MAX_ENCODED_WORDS:
        size = f"{words} encoded words; the first {MAX_ENCODED_WORDS} were read"
    else:
        size = f"{len(value)} characters; the first {MAX_HEADER_CHARS} were read"
    return f"header {name} is too long to read in full ({size})"
