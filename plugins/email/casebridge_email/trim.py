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

from array import array
from collections.abc import Sequence

from casebridge_email import quote_patterns as qp
from casebridge_email.trim_html import html_to_text, visible_html

__all__ = ["html_to_text", "normalize_lines", "visible_html", "visible_text"]

# Joined header candidates: an attribution wraps over at most this many lines.
_MAX_HEADER_LINES = 4
_HEADER_WINDOW = 6
_OUTLOOK_WINDOW = 7
# Trimming one pass can expose another marker (lines brought together); repeat until stable.
_MAX_PASSES = 4
# A quoted line this long was probably wrapped by the client (see wrapped_quote_end).
_WRAP_WIDTH = 60
# A rule line ("-----") opens a signature when at most this many lines of at most this
# width follow it before the end (a name, a title, a phone number).
_RULE_TAIL_LINES = 3
_RULE_TAIL_WIDTH = 40


def normalize_lines(text: str) -> list[str]:
    """Split ``text`` into lines with trailing whitespace removed and without leading or
    trailing blank lines. ``visible_text`` of text without quote markers equals
    ``"\\n".join(normalize_lines(text))``."""
    if "\r" in text:
        # The same lines as splitting on \r\n, \r or \n; str.split is faster than a regex.
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
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
    signatures set apart by a delimiter or added by a mail client (a ``-- `` line and what
    follows, a ``-----`` rule above a short block, ``Sent from my iPhone`` and other mobile
    footers, ``Get Outlook for iOS``). The customer's own closing (``Best,`` + name,
    ``Viele Grüße`` + name, ``-Name``) is new content and stays.

    Lines lose trailing whitespace; leading and trailing blank lines go. When trimming would
    leave nothing (the message is only a quote), the whole normalised text is returned.
    """
    lines = normalize_lines(text)
    kept = _trim(lines, keep_signature)
    if kept:
        return "\n".join(kept)
    # Only a quote. When it opens with an attribution followed by unmarked text (a quote
    # pasted without ">"), that text is what the sender wants read, without the attribution.
    rest = _after_leading_header(lines)
    kept = _trim(rest, keep_signature) if rest else []
    return "\n".join(kept or lines)


def _trim(lines: list[str], keep_signature: bool) -> list[str]:
    """Trimming passes until stable; ``[]`` when the first pass leaves nothing."""
    return _trim_tracked(lines, keep_signature)[0]


def _trim_tracked(
    lines: list[str], keep_signature: bool
) -> tuple[list[str], Sequence[int] | None]:
    """:func:`_trim`, and for each line it keeps its index in ``lines`` (``-1`` for a line
    cut short); ``None`` for the indices when every line is kept as it is."""
    current = lines
    origin: Sequence[int] | None = None
    check: list[int] | None = None
    for _ in range(_MAX_PASSES):
        trimmed, src = _trim_pass(current, keep_signature, check)
        if not any(trimmed):
            return ([], []) if current is lines else (current, origin)
        if len(trimmed) == len(current) and src[-1] >= 0:
            # Same length and no line cut short: a subsequence of every line is the input.
            break
        check = _lines_to_recheck(trimmed, src, len(current), keep_signature)
        if origin is not None:
            src = array("q", [origin[j] if j >= 0 else -1 for j in src])
        origin = src
        current = trimmed
        if not check:
            break
    return current, origin


# A line's decision looks at most this many lines ahead of it (or of the last line a
# signature check reaches): a header joins lines within _HEADER_WINDOW, an Outlook block
# spans _OUTLOOK_WINDOW.
_LOOKAHEAD = max(_HEADER_WINDOW, _OUTLOOK_WINDOW)
# A signature check reaches this many non-blank lines past its line (the next line, then
# short_tail's lines and what follows each).
_SIGNATURE_REACH = _RULE_TAIL_LINES + 1


def _lines_to_recheck(
    out: list[str], src: Sequence[int], n_before: int, keep_signature: bool
) -> list[int]:
    """The lines of ``out`` (one pass's output; ``src[j]`` is the input index of ``out[j]``,
    ``-1`` for a line cut short) that the next pass might not keep; ``[]`` when ``out`` is
    already stable.

    A pass decides each line from the kept lines before it and the lines after it, never
    from the input lines before it (a kept line is not a quote, so the look back in
    wrapped_quote_end finds none). Until the next pass changes something, it has kept the
    same lines before ``out[j]``; so it keeps ``out[j]`` too when the lines ``out[j]`` looks
    at are the same input lines, with nothing removed between them. A header or Outlook
    block starting at ``j`` looks ``_LOOKAHEAD`` lines ahead; a signature check
    ``_SIGNATURE_REACH`` non-blank lines and then ``_LOOKAHEAD`` lines ahead. When ``out``
    ends before the input did, header and Outlook tests see fewer lines and find no header
    where the pass found none (fewer lines, fewer fields, and no ``>`` quote follows, which
    only ever relaxes the header test); only a signature check, which asks whether a line
    is the last, can change its mind, and only with fewer than ``_SIGNATURE_REACH``
    non-blank lines after it.

    Whatever its context, a pass keeps a line that :func:`qp.may_matter` rejects (below kept
    lines, which are no quotes), and finds a signature at a line only through
    :func:`qp.opens_signature`, which looks at that line alone, unless
    :func:`qp.signature_needs_context` accepts it."""
    m = len(out)
    cut = src[m - 1] < 0
    end = m - 1 if cut else m  # out[:end] are input lines
    # A gap is where the run of consecutive input lines breaks: lines were removed there,
    # or the next line is one cut short.
    if end and src[end - 1] - src[0] == end - 1:
        gaps = []
    else:
        gaps = [g for g in range(1, end) if src[g] != src[g - 1] + 1]
    if cut:
        gaps.append(end)
    moved_end = not cut and src[m - 1] != n_before - 1
    if not gaps:
        # Only the end moved (the usual case): the last lines that may open a signature.
        if not moved_end or keep_signature:
            return []
        return _signature_lines_before(out, m)[::-1]
    recheck: set[int] = set()
    signatures = not keep_signature
    for gap in gaps:
        limit = max(gap - _LOOKAHEAD, 0)
        recheck.update(j for j in range(limit, gap) if out[j] and qp.may_matter(out[j]))
        if signatures:
            recheck.update(_signature_lines_before(out, limit))
    if cut:
        recheck.add(end)
    if moved_end and signatures:
        recheck.update(_signature_lines_before(out, m))
    return sorted(recheck)


def _signature_lines_before(out: list[str], limit: int) -> list[int]:
    """Lines before ``limit`` whose signature test depends on other lines and that have
    fewer than ``_SIGNATURE_REACH`` non-blank lines between them and ``limit``."""
    found = []
    seen = 0
    j = limit - 1
    while j >= 0 and seen < _SIGNATURE_REACH:
        line = out[j]
        if line:
            seen += 1
            if qp.signature_needs_context(line):
                found.append(j)
        j -= 1
    return found


def _after_leading_header(lines: list[str]) -> list[str]:
    """The lines after an attribution header that opens the text, when they are not a
    ``>`` quote; otherwise ``[]``."""
    if not lines:
        return []
    scan = _Scan(lines)
    span = scan.header_span(0)
    if not span or scan.is_quote(scan.nxt(span)):
        return []
    return normalize_lines("\n".join(lines[span:]))


class _Scan:
    """Line tests over normalised lines that look at the lines after a given one. Nothing
    is computed ahead: a pass usually stops at the first header, long before the end."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.n = len(lines)

    def nxt(self, i: int) -> int:
        """The index of the first non-blank line at or after ``i`` (``>= n`` when none)."""
        lines = self.lines
        n = self.n
        while i < n and not lines[i]:
            i += 1
        return i

    def is_quote(self, i: int) -> bool:
        if i >= self.n:
            return False
        line = self.lines[i]
        first_char = line[:1]
        # QUOTE_LINE without a call for the usual cases: ">" first, or no space first.
        return first_char == ">" or (first_char.isspace() and qp.QUOTE_LINE.match(line) is not None)

    def header_span(self, i: int, marked: bool | None = None) -> int:
        """Number of lines of the attribution header starting at ``i``, or 0. A header may be
        wrapped over a few lines, with blank lines in between (Polymail, Discourse).
        ``marked`` is ``qp.may_mark_quote(lines[i])`` when the caller knows it."""
        lines = self.lines
        candidate = lines[i]
        if marked is None:
            marked = qp.may_mark_quote(candidate)
        can_start = None if marked else qp.could_start_header(candidate)
        if can_start is False:
            return 0
        joined = 1
        k = i
        while True:
            following = self.nxt(k + 1)
            # A following ">" quote only ever relaxes the test: look at it only when needed.
            if qp.is_quote_header(candidate, before_quote=True) and (
                self.is_quote(following) or qp.is_quote_header(candidate, before_quote=False)
            ):
                return k + 1 - i
            if candidate.endswith((":", "：")) or joined == _MAX_HEADER_LINES:
                return 0
            if joined == 1:
                if can_start is None:
                    can_start = qp.could_start_header(candidate)
                if not can_start:
                    return 0
            k = following
            if k >= self.n or k - i >= _HEADER_WINDOW:
                return 0
            # A line continuing an unclosed "<address" is not a header of its own.
            if qp.starts_new_header(lines[k]) and candidate.count("<") <= candidate.count(">"):
                return 0
            if self.is_quote(k) and not qp.WRAPPED_ADDRESS_END.match(lines[k]):
                return 0
            candidate = candidate + " " + lines[k].strip()
            joined += 1

    def is_outlook_block(self, i: int) -> bool:
        """A run of quoted mail header lines (From:, Sent:, To:, Subject:) starting at ``i``."""
        return (
            i < self.n
            and qp.may_mark_quote(self.lines[i])
            and qp.is_field_block(self.lines[i : i + _OUTLOOK_WINDOW])
        )

    def field_block_end(self, i: int) -> int:
        """Index after the header lines (and their wrapped continuations) starting at ``i``."""
        k = i
        while k < self.n and self.lines[k]:
            k += 1
        return k

    def ends_here(self, i: int) -> bool:
        """Whether nothing but blank lines, quotes or cut markers follow line ``i``."""
        j = self.nxt(i + 1)
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

    def signature_starts(self, i: int) -> bool:
        """Whether a signature starts at line ``i``: a ``-- `` line, underscores or a mobile
        footer, or a dash rule above a few short lines that end the message. A closing such
        as ``Regards,`` + name is not one: it is the customer's, and often the only name the
        rep sees."""
        line = self.lines[i]
        if not qp.may_open_signature(line):
            return False
        if qp.opens_signature(line):
            return True
        if not qp.signature_needs_context(line):
            return False  # the test below cannot match
        following = self.nxt(i + 1)
        return following < self.n and self.short_tail(following)

    def short_tail(self, j: int) -> bool:
        """Whether a few short lines starting at ``j`` end the message or run into quoted
        material (a signature block)."""
        for _ in range(_RULE_TAIL_LINES):
            if len(self.lines[j]) > _RULE_TAIL_WIDTH:
                return False
            if self.ends_here(j):
                return True
            j = self.nxt(j + 1)
        return False

    def wrapped_quote_end(self, i: int) -> int:
        """Lines a mail client wrapped out of a ``>`` quote lose their marker: unquoted lines
        right after a long quoted line and right before another quoted line. Returns the
        index after such a run starting at ``i``, or ``i``."""
        if i == 0 or not self.is_quote(i - 1):
            return i
        line = self.lines[i]
        if len(self.lines[i - 1]) < _WRAP_WIDTH and not (
            self.is_quote(i + 1) and (line[0].isspace() or " " not in line)
        ):
            return i
        k = i
        while k < self.n and self.lines[k] and not self.is_quote(k):
            k += 1
        return k if self.is_quote(k) else i


def _split_prefix(line: str) -> str:
    """The reply text in front of a quote header sharing its line, or ``""``."""
    if line.find("On", 1) < 0:
        return ""  # SPLIT_HEADER needs "On" after the first character
    for match in qp.SPLIT_HEADER.finditer(line):
        start = match.start()
        if start and line[:start].strip() and qp.is_quote_header(line[start:], before_quote=False):
            return line[:start].rstrip(" -")
    return ""


def _trim_pass(
    lines: list[str], keep_signature: bool, check: list[int] | None = None
) -> tuple[list[str], array[int]]:
    """One trimming pass over ``lines``. Returns the kept lines and, for each, its index in
    ``lines`` (``-1`` for a line cut short).

    With ``check`` (ascending indices), the caller knows that the pass keeps every other
    line as long as it has kept all lines before it: only the lines in ``check`` are tested
    until one is not kept, and from then on every line."""
    scan = _Scan(lines)
    n = scan.n
    out: list[str] = []
    # Indices as machine integers: a large text's pass holds no int object per line.
    src = array("q")
    # Whether a kept line holds text: a signature needs some above it. A rule line is not
    # text (_tidy drops it at the end), or "==" above "--" would trim a message to nothing.
    has_text = False
    # Blank lines right after removed quote material go with it.
    after_removed = False
    quote_line = qp.QUOTE_LINE.match
    may_matter = qp.may_matter
    # Whether lines[i - 1] is a ">" quote: only then can line i be wrapped out of one.
    prev_quoted = False
    to_test = check if check is not None else []
    # Position in ``to_test`` while every line so far was kept; -1: test every line.
    pending = 0 if check is not None else -1
    i = 0
    while i < n:
        if pending >= 0:
            if len(out) != i:
                pending = -1  # the line just tested was not kept
            else:
                upto = to_test[pending] if pending < len(to_test) else n
                if i < upto:
                    # Kept untested; none is a quote (a pass never keeps one).
                    out.extend(lines[i:upto])
                    src.extend(range(i, upto))
                    has_text = has_text or any(map(_is_text, lines[i:upto]))
                    i = upto
                    prev_quoted = False
                    continue
                pending += 1
        line = lines[i]
        if not line:
            if not after_removed:
                out.append(line)
                src.append(i)
            prev_quoted = False
            i += 1
            continue
        # QUOTE_LINE without a call for the usual cases: ">" first, or no space first.
        first_char = line[0]
        if first_char == ">" or (first_char.isspace() and quote_line(line)):
            # Removed, with the ">" lines and blank lines right after it (what the branches
            # here would do with them, one at a time).
            i += 1
            while i < n and (not lines[i] or lines[i][0] == ">"):
                i += 1
            after_removed = True
            prev_quoted = bool(lines[i - 1])
            continue
        if prev_quoted:
            prev_quoted = False
            wrapped_end = scan.wrapped_quote_end(i)
            if wrapped_end > i:
                i = wrapped_end
                continue
        # Most lines hold nothing any rule below reacts to: kept without further tests.
        if may_matter(line):
            marked = qp.may_mark_quote(line)
            span = scan.header_span(i, marked)
            if span:
                prefix = _split_prefix(line) if span == 1 else ""
                if prefix:
                    # Reply text cut short ends the reply: a line is only cut as the last one.
                    out.append(prefix)
                    src.append(-1)
                    break
                if scan.is_quote(scan.nxt(i + span)):
                    after_removed = True
                    i += span
                    prev_quoted = scan.is_quote(i - 1)
                    continue
                break
            if marked and (qp.is_separator(line) or scan.is_outlook_block(i)):
                if not has_text and qp.is_forward_separator(line):
                    # A message that is only a forward: its content is the forwarded body.
                    i = scan.field_block_end(i + 1 if scan.is_outlook_block(i + 1) else i)
                    after_removed = True
                    prev_quoted = scan.is_quote(i - 1)
                    continue
                break
            if not keep_signature and has_text and scan.signature_starts(i):
                break
        out.append(line)
        src.append(i)
        has_text = has_text or _is_text(line)
        after_removed = False
        i += 1
    first, end = _tidy(out)
    if first == 0 and end == len(out):
        return out, src  # nothing to tidy: no copies of a large text's lists
    return out[first:end], src[first:end]


def _is_text(line: str) -> bool:
    return bool(line) and not qp.is_delimiter(line)


def _tidy(out: list[str]) -> tuple[int, int]:
    """The slice of ``out`` without leading blank lines and trailing blank or rule-only
    lines."""
    end = len(out)
    while end and (not out[end - 1] or qp.is_delimiter(out[end - 1])):
        end -= 1
    start = 0
    while start < end and not out[start]:
        start += 1
    return start, end
