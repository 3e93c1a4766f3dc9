"""Reply trimming: keep only the new content of an e-mail reply.

Pure functions, no I/O. :func:`visible_text` handles plain-text bodies;
:func:`visible_html` and :func:`html_to_text` (re-exported from
:mod:`casebridge_email.trim_html`) handle HTML parts.

What "never adds text" means here: the lines of ``visible_text(x)`` are, in order, a
subsequence of the lines of ``x`` (split on ``\\r\\n``, ``\\r`` or ``\\n``), each with trailing
whitespace removed; the last kept line may be cut short where a quote header starts inside it
(``Great, thanks!On Mon, ... wrote:``).
"""

from __future__ import annotations

import re

from casebridge_email import quote_patterns as qp
from casebridge_email.trim_html import html_to_text, visible_html

__all__ = ["html_to_text", "normalize_lines", "visible_html", "visible_text"]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Joined header candidates: an attribution wraps over at most this many lines.
_MAX_HEADER_LINES = 3
_OUTLOOK_WINDOW = 7
# Trimming one pass can expose another marker (lines brought together); repeat until stable.
_MAX_PASSES = 4


def normalize_lines(text: str) -> list[str]:
    """Split ``text`` into lines with trailing whitespace removed and without leading or
    trailing blank lines. ``visible_text`` of text without quote markers equals
    ``"\\n".join(normalize_lines(text))``."""
    lines = [line.rstrip() for line in _LINE_BREAK.split(text)]
    start = 0
    while start < len(lines) and not lines[start]:
        start += 1
    end = len(lines)
    while end > start and not lines[end - 1]:
        end -= 1
    return lines[start:end]


def visible_text(text: str, *, keep_signature: bool = False) -> str:
    """Return the new content of a plain-text reply.

    Drops ``>`` quoted lines, attribution headers (``On ... wrote:`` and equivalents in many
    languages, also when wrapped over two or three lines) together with everything after them
    unless a ``>`` quote follows (then answers interleaved between quoted lines are kept),
    Outlook ``From:/Sent:/To:/Subject:`` blocks, ``-----Original Message-----`` and
    forwarded-message separators with everything after them, and, unless ``keep_signature``,
    signatures (``-- ``, ``Sent from my iPhone`` and other mobile footers, ``Get Outlook for
    iOS``, ``-Name``, a short ``Thanks,`` + name closing).

    Lines lose trailing whitespace; leading and trailing blank lines go. When trimming would
    leave nothing (the message is only a quote), the whole normalised text is returned.
    """
    current = normalize_lines(text)
    for _ in range(_MAX_PASSES):
        trimmed = _trim_pass(current, keep_signature)
        if not any(trimmed) or trimmed == current:
            break
        current = trimmed
    return "\n".join(current)


def _next_nonblank(lines: list[str]) -> list[int]:
    """``result[i]`` is the index of the first non-blank line at or after ``i`` (or len)."""
    n = len(lines)
    result = [n] * (n + 1)
    for i in range(n - 1, -1, -1):
        result[i] = i if lines[i] else result[i + 1]
    return result


class _Scan:
    """One trimming pass over normalised lines."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.n = len(lines)
        self.nxt = _next_nonblank(lines)

    def is_quote(self, i: int) -> bool:
        return i < self.n and bool(qp.QUOTE_LINE.match(self.lines[i]))

    def header_span(self, i: int) -> int:
        """Number of lines of the attribution header starting at ``i``, or 0."""
        lines = self.lines
        candidate = lines[i]
        for span in range(1, _MAX_HEADER_LINES + 1):
            if span > 1:
                if i + span - 1 >= self.n or not lines[i + span - 1]:
                    return 0
                if not qp.could_start_header(lines[i]):
                    return 0
                if self.is_quote(i + span - 1):
                    return 0
                candidate = candidate + " " + lines[i + span - 1].strip()
            before_quote = self.is_quote(self.nxt[min(i + span, self.n)])
            if qp.is_quote_header(candidate, before_quote=before_quote):
                return span
            if candidate.rstrip().endswith((":", "：")):
                return 0
        return 0

    def is_outlook_block(self, i: int) -> bool:
        """A run of quoted mail header lines (From:, Sent:, To:, Subject:) starting at ``i``."""
        if not qp.is_field_line(self.lines[i]):
            return False
        fields = 0
        has_from = False
        for line in self.lines[i : i + _OUTLOOK_WINDOW]:
            if qp.is_field_line(line):
                fields += 1
                has_from = has_from or qp.is_from_field(line)
        return fields >= 2 and has_from

    def ends_here(self, i: int) -> bool:
        """Whether nothing but blank lines, quotes or cut markers follow line ``i``."""
        j = self.nxt[i + 1] if i + 1 <= self.n else self.n
        if j >= self.n:
            return True
        line = self.lines[j]
        return bool(
            qp.QUOTE_LINE.match(line)
            or qp.is_delimiter(line)
            or qp.is_separator(line)
            or self.header_span(j)
            or self.is_outlook_block(j)
        )

    def signature_starts(self, i: int, prev_blank: bool) -> bool:
        line = self.lines[i]
        if qp.opens_signature(line):
            if qp.MOBILE_FOOTER.match(line):
                return self.ends_here(i)
            return True
        if prev_blank and qp.is_dash_name(line):
            following = self.nxt[i + 1]
            return following >= self.n or not qp.is_dash_name(self.lines[following])
        if qp.is_sign_off(line):
            j = i + 1
            names = 0
            while j < self.n and self.lines[j] and names < 2 and qp.is_short_name(self.lines[j]):
                names += 1
                j += 1
            return names > 0 and self.ends_here(j - 1)
        return False


def _split_prefix(line: str) -> str:
    """The reply text in front of a quote header sharing its line, or ``""``."""
    for match in qp.SPLIT_HEADER.finditer(line):
        start = match.start()
        if start and line[:start].strip() and qp.is_quote_header(line[start:], before_quote=False):
            return line[:start].rstrip(" -")
    return ""


def _trim_pass(lines: list[str], keep_signature: bool) -> list[str]:
    scan = _Scan(lines)
    out: list[str] = []
    has_text = False
    i = 0
    while i < scan.n:
        line = lines[i]
        if not line:
            out.append(line)
            i += 1
            continue
        if qp.QUOTE_LINE.match(line):
            i += 1
            continue
        span = scan.header_span(i)
        if span:
            if scan.is_quote(scan.nxt[min(i + span, scan.n)]):
                i += span
                continue
            if span == 1:
                prefix = _split_prefix(line)
                if prefix:
                    out.append(prefix)
            break
        if qp.is_separator(line) or scan.is_outlook_block(i):
            break
        if not keep_signature and has_text:
            prev_blank = not out or not out[-1]
            if scan.signature_starts(i, prev_blank):
                break
        out.append(line)
        has_text = True
        i += 1
    return _tidy(out)


def _tidy(out: list[str]) -> list[str]:
    """Drop leading blank lines and trailing blank or rule-only lines."""
    end = len(out)
    while end and (not out[end - 1] or qp.is_delimiter(out[end - 1])):
        end -= 1
    start = 0
    while start < end and not out[start]:
        start += 1
    return out[start:end]
