"""Reply trimming and text rendering for HTML mail parts. Pure functions on strings.

``visible_html`` removes what mail clients mark as quoted (Gmail, Apple Mail, Thunderbird,
Outlook, Yahoo); ``html_to_text`` renders readable plain text.

"Never adds text" here means: the non-whitespace characters of
``html_to_text(visible_html(x))`` are a subsequence of those of ``html_to_text(x)``.

A document nested deeper than :data:`~.html_depth.MAX_HTML_DEPTH` is never parsed (tree
building is quadratic in depth): ``visible_html`` returns it unchanged and ``html_to_text``
reads its text with :func:`~.html_depth.flat_text`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from casebridge.plugin import html_flat_text as flat_text
from casebridge.plugin import html_too_deep as too_deep
from selectolax.lexbor import LexborHTMLParser, LexborNode

from casebridge_email import quote_patterns as qp

__all__ = ["html_to_text", "visible_html"]

# Elements that are quoted text themselves: removed, what follows stays (interleaved answers).
_QUOTE_SELECTORS = (
    "div.gmail_quote",
    "div.gmail_quote_container",
    "blockquote.gmail_quote",
    "blockquote",
    ".moz-cite-prefix",
    ".yahoo_quoted",
    "div.yahoo_quoted",
)
# Elements that start the quoted message: removed together with everything after them.
_CUT_SELECTORS = (
    "#divRplyFwdMsg",
    "#appendonsend",
    "div.OutlookMessageHeader",
    "#OLK_SRC_BODY_SECTION",
    "hr#stopSpelling",
    "#ecxstopSpelling",
    "div.gmail_extra > div.gmail_quote",
)
_CUT_QUERY = ", ".join(_CUT_SELECTORS)
_QUOTE_QUERY = ", ".join(_QUOTE_SELECTORS)
_BORDER_TOP = re.compile(r"border-top\s*:\s*solid", re.IGNORECASE)
_MAX_PASSES = 3
# An attribution wraps over at most this many rendered lines; a header block spans at most
# this many.
_HEADER_LINES = 3
_FIELD_WINDOW = 7

_SKIP_TAGS = frozenset({"script", "style", "head", "title", "template", "noscript", "-comment"})
_PARAGRAPH_TAGS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "ul", "ol", "table", "hr"}
)
_LINE_TAGS = frozenset(
    {
        "div",
        "section",
        "article",
        "header",
        "footer",
        "aside",
        "nav",
        "main",
        "address",
        "tr",
        "dl",
        "dt",
        "dd",
        "figure",
        "figcaption",
        "form",
        "fieldset",
        "center",
        "body",
        "html",
        "caption",
        "tbody",
        "thead",
        "tfoot",
        "details",
        "summary",
    }
)
_CELL_TAGS = frozenset({"td", "th"})
# Where a rendered line ends (for finding the node a quote header starts at).
_VOID_BREAKS = frozenset({"br", "hr"})
_BREAK_TAGS = _PARAGRAPH_TAGS | _LINE_TAGS | _VOID_BREAKS | {"li"}
_SPACES = re.compile(r"[^\S\n]+")
_MANY_BREAKS = re.compile(r"\n{3,}")
# A link's URL is shown beside its text only for these schemes: a javascript: or data: URL
# shown as text is an attack waiting for an auto-linker. Browsers ignore controls and spaces
# inside a scheme ("java\tscript:"), so they are removed before looking.
_SHOWN_SCHEMES = ("http:", "https:", "mailto:", "tel:")
_URL_IGNORED = re.compile(r"[\x00-\x20\x7f]+")


def visible_html(html: str) -> str:
    """Return ``html`` without its quoted part: ``<blockquote>`` (Gmail ``gmail_quote``, Apple
    Mail and Thunderbird ``type=cite``, mail.ru, Yandex), ``gmail_quote`` divs,
    ``moz-cite-prefix``, ``yahoo_quoted``, and Outlook's reply separator (``divRplyFwdMsg`` or
    the ``border-top`` header div) with everything after it, as well as a plain-text
    attribution (``On ... wrote:``), a ``From:/Sent:/To:`` header block or an
    ``Original Message`` separator and what follows it.

    Returns a full HTML document when something was removed, ``html`` unchanged otherwise, and
    also ``html`` unchanged when removing the quote would leave no text or when ``html`` is
    too deeply nested to parse.
    """
    if too_deep(html):
        return html
    # One parse; each pass edits the same tree and is kept only if text is left.
    tree = LexborHTMLParser(html)
    if tree.body is None:
        return html
    result = html
    for _ in range(_MAX_PASSES):
        outcome = _trim_tree(tree)
        if not outcome.changed or not outcome.has_text:
            break
        result = tree.html or ""
        if outcome.settled:
            break
    return result


@dataclass(frozen=True, slots=True)
class _PassOutcome:
    changed: bool  # something was removed
    has_text: bool  # text is left
    settled: bool  # another pass would remove nothing


def _trim_tree(tree: LexborHTMLParser) -> _PassOutcome:
    """One trimming pass over ``tree``, in place.

    Removing nodes never makes a selector match that did not (they test a node and its
    parent only), so after a pass no cut or quote selector matches: the first cut marker
    in document order went with everything after it, and every quote element went. The
    text cut then sees the lines it saw, or the lines before its cut (a header block test
    sees fewer lines, a wrapped attribution fewer to join): nothing new. Only an Outlook
    ``border-top`` block tested before a later removal changed its text may match now, so a
    pass that saw one is not settled."""
    changed = False
    # One query per kind: cutting from the first cut marker removes all later ones.
    node = tree.css_first(_CUT_QUERY)
    if node is not None:
        _cut_from(node)
        changed = True
    saw_border_top = False
    for div in tree.css("div[style]"):
        style = div.attributes.get("style") or ""
        if not _BORDER_TOP.search(style):
            continue
        saw_border_top = True
        if any(qp.is_field_line(line) for line in div.text(separator="\n").splitlines()[:3]):
            _cut_from(div)
            changed = True
            break
    for node in tree.css(_QUOTE_QUERY):
        if node.parent is not None:
            node.decompose()
            changed = True
    root = tree.root
    lines = _text_lines(root) if root is not None else []
    cut = _first_cut_node(lines)
    if cut is not None:
        _cut_from(cut)
        # The cut starts at the second line or later: the first line stays.
        return _PassOutcome(changed=True, has_text=True, settled=not saw_border_top)
    return _PassOutcome(changed=changed, has_text=bool(lines), settled=not saw_border_top)


def _text_lines(root: LexborNode) -> list[tuple[str, LexborNode | None]]:
    """The rendered lines of ``root`` (as :func:`html_to_text` breaks them, without blank
    ones), each with the text node it starts with."""
    lines: list[tuple[str, LexborNode | None]] = []
    words: list[str] = []
    first: LexborNode | None = None
    # Iterative walk in document order. A break tag ends the line where it opens and where
    # it closes; ``None`` on the stack marks where one closes.
    stack: list[LexborNode | None] = [root]
    pop = stack.pop
    push = stack.append
    while stack:
        node = pop()
        if node is not None:
            tag = node.tag or ""
            if tag == "-text":
                text = node.text_content or ""
                if text.strip():
                    if first is None:
                        first = node
                    words.append(text)
                continue
            if tag in _SKIP_TAGS or node.is_comment_node:
                continue
            if tag not in _BREAK_TAGS:
                child = node.last_child
                while child is not None:
                    push(child)
                    child = child.prev
                continue
        if words:
            lines.append((" ".join(" ".join(words).split()), first))
            words, first = [], None
        if node is not None and tag not in _VOID_BREAKS:
            push(None)
            child = node.last_child
            while child is not None:
                push(child)
                child = child.prev
    if words:
        lines.append((" ".join(" ".join(words).split()), first))
    return [(line, node) for line, node in lines if line]


def _first_cut_node(lines: list[tuple[str, LexborNode | None]]) -> LexborNode | None:
    """The node starting the first attribution, header block or separator below some text."""
    texts = [line for line, _ in lines]
    for i in range(1, len(lines)):
        line = texts[i]
        if qp.may_mark_quote(line) and (
            qp.is_quote_header(line, before_quote=False)
            or qp.is_separator(line)
            or qp.is_field_block(texts[i : i + _FIELD_WINDOW])
        ):
            return lines[i][1]
        if qp.could_start_header(line):
            joined = line
            for k in range(i + 1, min(i + _HEADER_LINES, len(texts))):
                joined = f"{joined} {texts[k]}"
                if qp.is_quote_header(joined, before_quote=False):
                    return lines[i][1]
    return None


def _cut_from(node: LexborNode) -> None:
    """Remove ``node`` and everything after it in document order (up to ``<body>``)."""
    current: LexborNode | None = node
    first = True
    while current is not None and current.tag not in ("body", "html"):
        sibling = current.next
        while sibling is not None:
            following = sibling.next
            sibling.decompose()
            sibling = following
        parent = current.parent
        if first:
            previous = current.prev
            # Outlook draws an <hr> right above its header block.
            if previous is not None and previous.tag == "hr":
                previous.decompose()
            current.decompose()
            first = False
        current = parent


def html_to_text(html: str) -> str:
    """Render ``html`` as readable plain text: block elements start new lines (paragraphs are
    separated by a blank line), ``<br>`` is a newline, list items start with ``- ``, links
    read ``text (url)`` when the URL differs from the text, ``<script>``/``<style>`` are
    dropped, entities are decoded and runs of whitespace collapse to one space. A document
    too deeply nested to parse is read flat (no lists, links or paragraphs)."""
    if too_deep(html):
        return flat_text(html)
    tree = LexborHTMLParser(html)
    root = tree.root
    if root is None:
        return ""
    parts: list[str] = []
    # Iterative walk: a deeply nested message must not hit the recursion limit. A node on
    # the stack is entered; a (node, tag) pair is closed (only tags whose closing writes).
    stack: list[LexborNode | tuple[LexborNode, str]] = [root]
    pop = stack.pop
    push = stack.append
    pre_depth = 0
    while stack:
        item = pop()
        if type(item) is tuple:
            node, tag = item
            if tag == "pre":
                pre_depth -= 1
            _close(node, tag, parts)
            continue
        node = item
        tag = node.tag or ""
        if tag == "-text":
            text = node.text_content or ""
            parts.append(text if pre_depth else _collapse(text))
            continue
        if tag in _SKIP_TAGS or node.is_comment_node:
            continue
        if tag == "br":
            parts.append("\n")
            continue
        if tag == "pre":
            pre_depth += 1
        _open(tag, parts)
        if tag in _CLOSE_WRITES:
            push((node, tag))
        child = node.last_child
        while child is not None:
            push(child)
            child = child.prev
    return _finish("".join(parts))


# Tags whose closing does something in _close (or ends a <pre>).
_CLOSE_WRITES = _PARAGRAPH_TAGS | _LINE_TAGS | {"a", "pre"}


def _collapse(text: str) -> str:
    core = " ".join(text.split())
    if not core:
        return " " if text else ""
    lead = " " if text[0].isspace() else ""
    trail = " " if text[-1].isspace() else ""
    return lead + core + trail


def _open(tag: str, parts: list[str]) -> None:
    if tag in _PARAGRAPH_TAGS:
        parts.append("\n\n")
    elif tag == "li":
        parts.append("\n- ")
    elif tag in _LINE_TAGS:
        parts.append("\n")
    elif tag in _CELL_TAGS:
        parts.append(" ")


def _close(node: LexborNode, tag: str, parts: list[str]) -> None:
    if tag == "a":
        href = _shown_href(node.attributes.get("href") or "")
        label = " ".join(node.text(deep=True).split())
        if href and not href.startswith("#") and href not in (label, f"mailto:{label}"):
            parts.append(f" ({href})" if label else href)
    elif tag in _PARAGRAPH_TAGS:
        parts.append("\n\n")
    elif tag in _LINE_TAGS:
        parts.append("\n")


def _shown_href(href: str) -> str:
    """``href`` stripped, or "" when it names a scheme other than :data:`_SHOWN_SCHEMES`."""
    href = href.strip()
    squeezed = _URL_IGNORED.sub("", href).lower()
    scheme, colon, _ = squeezed.partition(":")
    if colon and "/" not in scheme and not squeezed.startswith(_SHOWN_SCHEMES):
        return ""
    return href


def _finish(text: str) -> str:
    text = text.replace("\u00a0", " ")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _MANY_BREAKS.sub("\n\n", "\n".join(lines)).strip()
