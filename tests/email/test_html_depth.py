"""The nesting scan that keeps deeply nested HTML away from the (quadratic) tree builders,
checked against the tree lexbor actually builds, and the text read from such a document."""

from __future__ import annotations

import html as html_lib
import re

import pytest
from casebridge.html_depth import MAX_HTML_DEPTH, flat_text, nesting_depth, too_deep
from casebridge.sanitize import sanitize_html
from casebridge_email.trim_html import html_to_text, visible_html
from hypothesis import given, settings
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser, LexborNode


def tree_depth(html: str) -> int:
    """The depth of the element tree lexbor builds under <body> (iterative walk)."""
    body = LexborHTMLParser(html).body
    deepest = 0
    stack: list[tuple[LexborNode, int]] = [(body, 0)] if body is not None else []
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        child = node.child
        while child is not None:
            if child.tag and not child.tag.startswith("-"):
                stack.append((child, depth + 1))
            child = child.next
    return deepest


# Formatting elements (<b>, <font>, <a> ...) are left out: the tree builder reopens them after
# a block closes them ("reconstruct the active formatting elements"), which the scan does not
# model; inputs built on that are slow to parse, and parsing runs off the event loop.
TAGS = ["div", "span", "p", "li", "ul", "td", "tr", "table", "dd", "option", "optgroup",
        "select", "rt", "svg", "math", "template", "blockquote", "section", "button", "pre",
        "h1", "h2", "DIV", "Td", "form", "dt", "caption", "object", "col", "center", "label",
        "foreignObject", "desc", "g"]  # fmt: skip
token = st.one_of(
    st.sampled_from(TAGS).map(lambda t: f"<{t}>"),
    st.sampled_from(TAGS).map(lambda t: f"</{t}>"),
    st.sampled_from(["x", " ", "<br>", "<img src=a>", "<!-- <div> -->", "<p/>",
                     "<script><div><div></script>", "<div class='a'>"]),
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(token, max_size=120), st.integers(min_value=1, max_value=30))
def test_the_scan_never_underestimates_the_built_tree_by_more_than_a_factor(
    tokens: list[str], repeat: int
) -> None:
    html = "".join(tokens) * repeat
    # Elements that cannot nest on their own are not counted (a <td> is closed by the next
    # one), so the scan may be below the built depth, but within a bounded factor (a nested
    # table is table > tbody > tr > td, counted once): a bound on the scan bounds the tree.
    assert tree_depth(html) <= 4 * nesting_depth(html, limit=10_000) + 3, html


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=2 * MAX_HTML_DEPTH))
def test_nested_divs_are_counted_exactly(depth: int) -> None:
    html = "<html><body>" + "<div>" * depth + "text" + "</div>" * depth + "</body></html>"
    assert nesting_depth(html, limit=10 * MAX_HTML_DEPTH) == depth + 2
    assert too_deep(html) == (depth + 2 > MAX_HTML_DEPTH)


def test_flat_documents_are_shallow_however_long() -> None:
    table = "<table>" + "<tr><td>a<td>b</tr>" * 20_000 + "</table>"
    paragraphs = "<p>one<p>two<br><li>three<img src=x>" * 20_000
    assert nesting_depth(table) == 1
    assert nesting_depth(paragraphs) == 2  # <li><p>
    # Unbalanced end tags neither nest nor un-nest anything.
    assert nesting_depth("</div></span>" * 10_000 + "<div><b>x</b></div>") == 2


def test_end_tags_without_an_open_element_do_not_hide_depth() -> None:
    # </span> closes nothing in a tree builder; a naive counter would see depth 0.
    html = "<div></span>" * 2 * MAX_HTML_DEPTH
    assert too_deep(html) and tree_depth(html[: 200 * 12]) == 200


def test_foreign_content_counts_every_element() -> None:
    # Inside <svg> a <td> is an element like any other, and nests.
    html = "<svg>" + "<td>" * 2 * MAX_HTML_DEPTH
    assert too_deep(html)
    assert not too_deep("<svg></svg>" + "<td>" * 2 * MAX_HTML_DEPTH)


def test_flat_text_reads_text_drops_script_and_breaks_blocks() -> None:
    html = (
        "<html><head><title>T &amp; C</title><style>p{color:red}</style></head><body>"
        + "<div>" * 5_000
        + "Router <b>4711</b> keeps&nbsp;rebooting.<script>alert('<div>')</script><!-- hidden -->"
        + "<p>Second &lt;para&gt;</p>"
        + "</div>" * 5_000
        + "</body></html>"
    )
    assert flat_text(html) == "T & C\n\nRouter 4711 keeps rebooting.\nSecond <para>"


@settings(deadline=None)
@given(st.text(max_size=300))
def test_flat_text_never_leaves_a_tag_or_a_script(text: str) -> None:
    html = f"<div>{text}</div><script>alert(1)</script><b onclick='x'>ok</b>"
    flat = flat_text(html)
    assert "alert(1)" not in flat and "onclick" not in flat
    assert not re.search(r"<(?:script|b|div)\b", flat.lower()) or "<" in text


@settings(deadline=None)
@given(st.text(alphabet="<>/!-abdipv =\"'", max_size=400))
def test_scan_and_flat_text_take_any_input(html: str) -> None:
    assert nesting_depth(html) >= 0
    assert isinstance(flat_text(html), str)


@pytest.mark.parametrize("depth", [30_000, 100_000])
def test_deeply_nested_html_is_read_flat_by_every_html_step(depth: int) -> None:
    html = (
        "<html><body>"
        + "<div>" * depth
        + "Order <b>5512</b> never arrived.<script>alert(1)</script><img src=x onerror=alert(2)>"
        + "</div>" * depth
        + "</body></html>"
    )
    # Not parsed: trimming leaves it as it is, the text and the sanitized form are flat.
    assert visible_html(html) is html
    assert html_to_text(html) == "Order 5512 never arrived."
    assert sanitize_html(html) == "<p>Order 5512 never arrived.</p>"


@settings(deadline=None)
@given(st.text(max_size=200))
def test_sanitized_deep_html_is_its_escaped_text(text: str) -> None:
    html = "<div>" * (MAX_HTML_DEPTH + 1) + html_lib.escape(text) + "<script>x()</script>"
    clean = sanitize_html(html)
    # Only <p> and <br> are markup in it; the customer's text reads back as it was.
    assert re.sub(r"</?p>|<br>", "", clean).count("<") == 0
    assert html_lib.unescape(re.sub(r"</?p>|<br>", " ", clean)).split() == (flat_text(html).split())
    assert "x()" not in clean


def test_svg_element_names_in_html_content_are_ordinary_elements() -> None:
    # Outside <svg>, <foreignObject> is an unknown HTML element: </li> closes past it, and
    # each <div> then nests in the one before (found by the property test above).
    html = "<div><li><foreignObject></li></foreignObject>" * 40
    assert nesting_depth(html, limit=10_000) >= tree_depth(html) // 4
    assert tree_depth(html) <= 4 * nesting_depth(html, limit=10_000) + 3


def test_too_deep_answers_the_same_for_a_document_seen_before() -> None:
    deep = "<div>" * (MAX_HTML_DEPTH + 1)
    shallow = "<div>" * MAX_HTML_DEPTH
    for _ in range(3):  # remembered answers are the scan's answers
        assert too_deep(deep) and not too_deep(shallow)
        assert not too_deep(deep, limit=MAX_HTML_DEPTH + 1)
    huge = "<p>x</p>" * 200_000 + deep  # past the remembered size: scanned each time
    assert too_deep(huge) and too_deep(huge)
