"""Reply trimming of a large text without a ``str`` for every one of its lines.

:func:`~casebridge_email.trim.visible_text` splits its text into a list of lines: for a
25 MiB log that is about 1.8 times the text again, in small ``str`` objects. Most lines of
such a text are *plain*: not blank, no ``>`` quote, no rule line, nothing
:func:`qp.may_matter` lets through; no rule acts on a plain line. The rules look at plain
lines only from another line: within a few lines after it (a wrapped attribution header
joins lines within ``_HEADER_WINDOW``, an Outlook block spans ``_OUTLOOK_WINDOW``), or
through tests that see no more of a plain line than that it is plain, not blank, and
longer than ``_RULE_TAIL_WIDTH`` or not (a short signature block; the run of lines a client
wrapped out of a quote; whether a line ends the message).

So the trimmer runs here on the same number of lines in which each plain line further than
``_CONTEXT`` lines from any other kind of line is a shared placeholder of its length class;
blank lines are the shared ``""``. The lines kept are then read back from the text by index.
The list then costs a pointer per line (plus the lines near quotes, headers and the like),
and a text that loses nothing but whitespace comes back as the very same object.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Sequence

from casebridge_email import quote_patterns as qp
from casebridge_email import trim

__all__ = ["visible_large"]

# Line breaks as normalize_lines reads them.
_BREAK = re.compile(r"\r\n|\r|\n")
# Lines after a non-plain line that are kept as they are: everything a rule reads whole.
_CONTEXT = trim._LOOKAHEAD + 1
_SHORT = "x"
_LONG = "x" * (trim._RULE_TAIL_WIDTH + 1)
_BLANK, _PLAIN, _OTHER = 0, 1, 2
# A stretch of kept lines whose "\n"-joined text is not the same stretch of the input.
_UNTIDY = re.compile(r"\r|[^\S\n](?=\n|\Z)")


class _Lines:
    """Where each line of a text lies, and whether it is blank, plain or neither."""

    def __init__(self, text: str) -> None:
        self.text = text
        # Four bytes a position where they fit (any mail the bridge accepts).
        code = "i" if len(text) < 2**31 else "q"
        self.starts = array(code)
        self.ends = array(code)
        self.kinds = bytearray()
        at = 0
        for match in _BREAK.finditer(text):
            self._add(at, match.start())
            at = match.end()
        self._add(at, len(text))

    def _add(self, start: int, end: int) -> None:
        self.starts.append(start)
        self.ends.append(end)
        line = self.text[start:end].rstrip()
        if not line:
            kind = _BLANK
        elif qp.QUOTE_LINE.match(line) or qp.may_matter(line) or qp.is_delimiter(line):
            kind = _OTHER
        else:
            kind = _PLAIN
        self.kinds.append(kind)

    def line(self, i: int) -> str:
        return self.text[self.starts[i] : self.ends[i]].rstrip()

    def compact(self, first: int, end: int) -> list[str]:
        """Lines ``first`` to ``end`` with far plain lines as placeholders."""
        kinds = self.kinds
        near = bytearray(len(kinds))
        for i in range(first, end):
            if kinds[i] == _OTHER:
                stop = min(i + _CONTEXT + 1, end)
                near[i:stop] = b"\x01" * (stop - i)
        out: list[str] = []
        for i in range(first, end):
            kind = kinds[i]
            if kind == _BLANK:
                out.append("")
            elif kind == _OTHER or near[i]:
                out.append(self.line(i))
            else:
                out.append(_LONG if len(self.line(i)) > trim._RULE_TAIL_WIDTH else _SHORT)
        return out

    def joined(self, first: int, kept: list[str], origin: Sequence[int]) -> str:
        """The kept lines (``origin`` indices from ``first``) joined by ``"\\n"``, read from
        the text a stretch of consecutive lines at a time."""
        pieces: list[str] = []
        j = 0
        while j < len(origin):
            if origin[j] < 0:
                pieces.append(kept[j])
                j += 1
                continue
            k = j
            while k + 1 < len(origin) and origin[k + 1] == origin[k] + 1:
                k += 1
            a, b = first + origin[j], first + origin[k]
            piece = self.text[self.starts[a] : self.ends[b]]
            if _UNTIDY.search(piece):
                piece = "\n".join(self.line(i) for i in range(a, b + 1))
            pieces.append(piece)
            j = k + 1
        return "\n".join(pieces)


def visible_large(text: str, *, keep_signature: bool = False) -> str:
    """What :func:`trim.visible_text` keeps of ``text``, except that when it keeps every
    line (only tidying whitespace: trailing spaces, CRs, blank lines around the text),
    ``text`` itself is returned as sent, not a tidied copy."""
    lines = _Lines(text)
    kinds = lines.kinds
    if _OTHER not in kinds:
        return text
    first = 0
    end = len(kinds)
    while first < end and kinds[first] == _BLANK:
        first += 1
    while end > first and kinds[end - 1] == _BLANK:
        end -= 1
    compact = lines.compact(first, end)
    kept, origin = trim._trim_tracked(compact, keep_signature)
    if not kept:
        # Only a quote: visible_text's other readings of it need the lines themselves.
        del compact, kept
        return trim.visible_text(text, keep_signature=keep_signature)
    if origin is None or (len(origin) == end - first and origin[-1] >= 0):
        return text  # every line kept (a subsequence as long as the input is all of it)
    return lines.joined(first, kept, origin)
