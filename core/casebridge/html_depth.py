"""How deeply an HTML document nests, measured without building its tree. Pure functions.

HTML tree builders (lexbor behind selectolax, html5ever behind nh3) take time quadratic in
nesting depth: 30,000 nested ``<div>``s took 14 seconds to trim, sanitize and render, 100,000
over 70. Browsers cap the depth they build (Blink at 512); :func:`too_deep` tells a document
past :data:`MAX_HTML_DEPTH` in one linear scan, and :func:`flat_text` reads such a document's
text without a tree.

The scan models the tree builder closely enough for a bound: void elements and elements whose
end tag is implied (``<p>``, ``<li>``, ``<td>`` ...) do not nest, an end tag closes the
nearest open element of its name and everything opened inside it, and an end tag with no
open element of its name is ignored. Markup inside comments and raw-text elements
(``<script>``, ``<style>`` ...) is not markup.
"""

from __future__ import annotations

import html as html_lib
import re
import string
from functools import lru_cache

__all__ = ["MAX_HTML_DEPTH", "flat_text", "nesting_depth", "too_deep"]

MAX_HTML_DEPTH = 512

_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
     "source", "track", "wbr", "keygen", "frame", "basefont", "bgsound", "image"}
)  # fmt: skip
# Elements a start tag of their own kind (or a block) closes in HTML content: they never nest
# deeply there. (Inside <svg>, <math> or <template> they can, and every tag counts.)
_IMPLIED_END = frozenset(
    {"tr", "td", "th", "thead", "tbody", "tfoot", "colgroup", "caption"}
)  # fmt: skip
# "Special" elements (HTML's parsing rules): an end tag of another name stops at them.
_SPECIAL = frozenset(
    {"address", "applet", "article", "aside", "blockquote", "body", "button", "caption",
     "center", "colgroup", "dd", "details", "dialog", "dir", "div", "dl", "dt", "fieldset",
     "figcaption", "figure", "footer", "form", "frameset", "h1", "h2", "h3", "h4", "h5", "h6",
     "head", "header", "hgroup", "html", "li", "listing", "main", "marquee", "menu", "nav",
     "object", "ol", "p", "pre", "search", "section", "select", "summary", "table", "tbody",
     "td", "template", "tfoot", "th", "thead", "tr", "ul", "svg", "math", "foreignobject",
     "desc", "mi", "mo", "mn", "ms", "mtext", "annotation-xml"}
)  # fmt: skip
# Where an element stops being "in scope" for a block's end tag.
_SCOPE_BOUNDARIES = frozenset(
    {"applet", "caption", "html", "table", "td", "th", "marquee", "object", "template", "svg",
     "math", "foreignobject", "desc", "mi", "mo", "mn", "ms", "mtext", "annotation-xml"}
)  # fmt: skip
# End tags that close their element when it is in scope, whatever is open inside it.
_SCOPED_END = _SPECIAL - _SCOPE_BOUNDARIES
# A list item's start tag closes the open item it names, unless one of these is nearer.
_ITEM_FENCES = _SPECIAL - {"address", "div", "p"}
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
# End tags whose scope has boundaries of its own: list item scope, button scope.
_EXTRA_SCOPE = {"li": ("ul", "ol"), "p": ("button",)}
# Start tags that close an open <p> (in button scope) first.
_CLOSES_P = _HEADINGS | {
    "address", "article", "aside", "blockquote", "center", "details", "dialog", "dir", "div",
    "dl", "fieldset", "figcaption", "figure", "footer", "header", "hgroup", "main", "menu",
    "nav", "ol", "p", "search", "section", "summary", "ul", "pre", "listing", "form", "li",
    "dd", "dt", "xmp", "hr", "plaintext",
}  # fmt: skip
# (<table> closes an open <p> too, except in quirks mode: mail rarely has a doctype.)
_ITEMS_CLOSED = {"li": ("li",), "dd": ("dd", "dt"), "dt": ("dd", "dt")}
# Elements whose content is text up to their own end tag.
_RAW_TEXT = frozenset(
    {"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes",
     "noscript", "plaintext"}
)  # fmt: skip
# Raw-text content is dropped from flat text; only textarea and title read as text.
_RAW_TEXT_SHOWN = frozenset({"textarea", "title"})
_BREAKS = frozenset(
    {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
     "table", "ul", "ol", "hr", "section", "article", "header", "footer", "dl", "dt", "dd"}
)  # fmt: skip
_SPACES = re.compile(r"[^\S\n]+")
# A comment start, or a tag start (as the tokenizer reads its name) of an element that can
# nest, in ASCII-lower-cased text: void and implied-end elements are skipped by the pattern
# itself, which keeps the scan of a long flat document (thousands of table cells) quick.
_SKIPPED = "|".join(sorted(_VOID | _IMPLIED_END, key=len, reverse=True))
_TAG = re.compile(rf"<(?:(!--)|(/?)(?!(?:{_SKIPPED})[\t\n\f\r />])([a-z][^\t\n\f\r />\x00]*))")
_EVERY_TAG = re.compile(r"<(?:(!--)|(/?)([a-z][^\t\n\f\r />\x00]*))")
# Where SVG and MathML content starts: HTML's rules that end elements implicitly do not apply
# in it, except that an HTML start tag from _BREAKOUT ends it; inside _HTML_INSIDE elements
# content is HTML again.
_FOREIGN = frozenset({"svg", "math"})
_HTML_INSIDE = frozenset(
    {"foreignobject", "desc", "title", "mi", "mo", "mn", "ms", "mtext", "annotation-xml"}
)
_BREAKOUT = frozenset(
    {"b", "big", "blockquote", "body", "br", "center", "code", "dd", "div", "dl", "dt", "em",
     "embed", "h1", "h2", "h3", "h4", "h5", "h6", "head", "hr", "i", "img", "li", "listing",
     "menu", "meta", "nobr", "ol", "p", "pre", "ruby", "s", "small", "span", "strong",
     "strike", "sub", "sup", "table", "tt", "u", "ul", "var"}
)  # fmt: skip
# Lower-cases ASCII only, so positions in the copy are positions in the original (and a
# case-sensitive pattern runs four times faster than re.IGNORECASE).
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
# What flat text drops as a whole: comments and raw-text elements.
_HIDDEN = re.compile(rf"<(?:(!--)|({'|'.join(sorted(_RAW_TEXT))})(?=[\t\n\f\r />]))")
_BREAK_TAG = re.compile(
    rf"</?(?:{'|'.join(sorted(_BREAKS, key=len, reverse=True))})(?=[\t\n\f\r />])[^<>]*>",
    re.IGNORECASE,
)
# Any other tag; stopping at the next "<" keeps an unclosed tag from costing a rescan.
_ANY_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_MANY_BREAKS = re.compile(r"\n{3,}")
_SLICE = 32 * 1024
# Documents up to this many characters have their too_deep answer remembered.
_REMEMBERED_CHARS = 1 << 20


def _end_of_raw_text(low: str, name: str, start: int) -> int:
    """Where the end tag of raw-text element ``name`` begins in ``low`` (lower-cased), or -1
    (it runs to the end)."""
    return low.find(f"</{name}", start)


def nesting_depth(html: str, limit: int = MAX_HTML_DEPTH) -> int:
    """The deepest nesting of elements in ``html``, or a number over ``limit`` as soon as the
    scan passes it (it stops there)."""
    low = html.translate(_ASCII_LOWER)
    elements = _OpenElements()
    deepest = 0
    pos = 0
    while (match := elements.pattern.search(low, pos)) is not None:
        if match.group(1):
            end = low.find("-->", match.end())
            if end < 0:
                break
            pos = end + 3
            continue
        pos = match.end()
        name = match.group(3)
        if match.group(2):
            elements.close(name)
            continue
        if name in _RAW_TEXT and not elements.in_foreign():
            pos = _end_of_raw_text(low, name, pos)
            if pos < 0:
                break
            continue
        depth = elements.open(name)
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest


class _OpenElements:
    """The tree builder's stack of open elements, as far as end tags go (HTML's "in body"
    rules): an end tag of a block element closes the nearest open one unless a scope
    boundary (``<table>``, ``<td>`` ...) is nearer; any other end tag closes the nearest
    open element of its name unless a "special" element is nearer; else it is ignored.
    Each check is O(1) and each element is popped once, so the scan stays linear."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._where: dict[str, list[int]] = {}  # name -> indices where it is open
        self._specials: list[int] = [-1]
        self._boundaries: list[int] = [-1]
        self._item_fences: list[int] = [-1]
        self._foreign_flags: list[bool] = []  # per open element: is it SVG/MathML content
        self._foreign = 0
        self._form_open = False
        self.pattern = _TAG

    def in_foreign(self) -> bool:
        """Whether a start tag now opens SVG/MathML content (not HTML)."""
        return bool(self.names) and self._foreign_flags[-1] and self.names[-1] not in _HTML_INSIDE

    def open(self, name: str) -> int:
        foreign = self.in_foreign()
        if foreign and name in _BREAKOUT:
            while self.in_foreign():
                self._pop()
            foreign = False
        if not foreign:
            if name == "form":
                if self._form_open:
                    return len(self.names)  # a form inside a form is ignored
                self._form_open = True
            self._implied_closes(name)
        index = len(self.names)
        self.names.append(name)
        self._where.setdefault(name, []).append(index)
        # <foreignObject>, <desc>, <mi> ... are special only as SVG/MathML elements: in HTML
        # content they are unknown elements, which any end tag may close past.
        if foreign or name not in _HTML_INSIDE:
            if name in _SPECIAL:
                self._specials.append(index)
            if name in _SCOPE_BOUNDARIES:
                self._boundaries.append(index)
            if name in _ITEM_FENCES:
                self._item_fences.append(index)
        foreign = foreign or name in _FOREIGN
        self._foreign_flags.append(foreign)
        if foreign:
            self._foreign += 1
            self.pattern = _EVERY_TAG
        return index + 1

    def _implied_closes(self, name: str) -> None:
        """What an HTML start tag closes before it opens."""
        if name in _ITEMS_CLOSED:
            self._close_item(_ITEMS_CLOSED[name])
        elif name == "button":
            self.close(name)  # a button's start tag closes an open button in scope
        elif name in _HEADINGS and self.names and self.names[-1] in _HEADINGS:
            self._pop()  # a heading's start tag closes a heading that is the current node
        elif name == "option" and self.names and self.names[-1] == "option":
            self._pop()  # likewise an option's
        if name in _CLOSES_P:
            self._close_p()

    def close(self, name: str) -> None:
        if name == "form":
            # </form> takes the form out of the middle of the stack and leaves what is open
            # inside it open; in the tree the form stays their ancestor, so it stays counted.
            self._form_open = False
            return
        if self.in_foreign():
            # SVG/MathML end tags: only the current element is taken to close (never fewer
            # elements counted than the tree builder keeps open).
            if self.names[-1] == name:
                self._pop()
            return
        # Any heading's end tag closes the nearest heading, whatever its level.
        kinds = _HEADINGS if name in _HEADINGS else (name,)
        target = max((where[-1] for kind in kinds if (where := self._where.get(kind))), default=-1)
        if target < 0:
            return
        fence = (self._boundaries if name in _SCOPED_END else self._specials)[-1]
        for extra in _EXTRA_SCOPE.get(name, ()):
            if where := self._where.get(extra):
                fence = max(fence, where[-1])
        # The element itself may be the nearest special one (or boundary): then it closes.
        if target < fence:
            return
        while len(self.names) > target:
            self._pop()

    def _close_p(self) -> None:
        """Close an open <p> in button scope (what a block's start tag does)."""
        where = self._where.get("p")
        if not where:
            return
        buttons = self._where.get("button")
        fence = max(self._boundaries[-1], buttons[-1] if buttons else -1)
        target = where[-1]
        if target > fence:
            while len(self.names) > target:
                self._pop()

    def _close_item(self, kinds: tuple[str, ...]) -> None:
        target = max((where[-1] for kind in kinds if (where := self._where.get(kind))), default=-1)
        # Items are fences themselves: the open item closes when it is the nearest fence.
        if target >= 0 and target == self._item_fences[-1]:
            while len(self.names) > target:
                self._pop()

    def _pop(self) -> None:
        name = self.names.pop()
        index = len(self.names)
        self._where[name].pop()
        if self._specials[-1] == index:
            self._specials.pop()
        if self._boundaries[-1] == index:
            self._boundaries.pop()
        if self._item_fences[-1] == index:
            self._item_fences.pop()
        if self._foreign_flags.pop():
            self._foreign -= 1
            if not self._foreign:
                self.pattern = _TAG


def too_deep(html: str, limit: int = MAX_HTML_DEPTH) -> bool:
    """True when ``html`` nests elements deeper than ``limit``.

    Remembered for the last few documents up to :data:`_REMEMBERED_CHARS`: one inbound's HTML
    is checked by the trimmer, the sanitizer and the activity note in turn (the same str,
    whose hash Python keeps, so a repeat costs a lookup instead of a scan). Larger ones are
    not kept alive by the cache.
    """
    if len(html) > _REMEMBERED_CHARS:
        return nesting_depth(html, limit) > limit
    return _remembered_too_deep(html, limit)


@lru_cache(maxsize=4)
def _remembered_too_deep(html: str, limit: int) -> bool:
    return nesting_depth(html, limit) > limit


def flat_text(html: str) -> str:
    """The text of ``html`` without building a tree: tags removed (block tags break lines),
    comments, scripts and styles dropped, entities decoded, whitespace collapsed. Linear in
    the length of ``html``, for documents too deeply nested to render."""
    low = html.translate(_ASCII_LOWER)
    parts: list[str] = []
    pos = 0
    while (match := _HIDDEN.search(low, pos)) is not None:
        parts.append(_untagged(html[pos : match.start()]))
        if match.group(1):
            end = html.find("-->", match.end())
            pos = end + 3 if end >= 0 else len(html)
            continue
        name = match.group(2)
        close = html.find(">", match.end())
        end = _end_of_raw_text(low, name, close) if close >= 0 else -1
        if name in _RAW_TEXT_SHOWN and end >= 0:
            parts.append(html[close + 1 : end])
        if end < 0:
            pos = len(html)
            break
        pos = html.find(">", end)
        pos = len(html) if pos < 0 else pos + 1
    parts.append(_untagged(html[pos:]))
    return _finish(parts)


def _untagged(segment: str) -> str:
    # In slices cut where a tag starts: one regex call over a megabyte holds the GIL for a
    # tenth of a second, and this runs in a worker thread beside the event loop.
    parts = []
    start = 0
    while start < len(segment):
        cut = segment.find("<", start + _SLICE)
        end = len(segment) if cut < 0 else cut
        parts.append(_ANY_TAG.sub("", _BREAK_TAG.sub("\n", segment[start:end])))
        start = end
    return "".join(parts)


def _finish(parts: list[str]) -> str:
    text = html_lib.unescape("".join(parts)).replace("\u00a0", " ")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _MANY_BREAKS.sub("\n\n", "\n".join(lines)).strip()
