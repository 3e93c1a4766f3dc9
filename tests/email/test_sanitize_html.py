"""sanitize_html: the allowlist holds for arbitrary and adversarial input."""

from __future__ import annotations

import html as htmllib
from html.parser import HTMLParser

import pytest
from casebridge.sanitize import sanitize_html
from hypothesis import given, settings
from hypothesis import strategies as st

URL_ATTRIBUTES = {
    "href",
    "src",
    "cite",
    "action",
    "formaction",
    "background",
    "poster",
    "xlink:href",
}
SAFE_SCHEMES = ("http:", "https:", "mailto:")


class Collect(HTMLParser):
    """Every start tag with its attributes, values entity-decoded as a browser would."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def assert_safe(output: str) -> None:
    lowered = output.lower()
    # Text is escaped, so a raw "<script" can only be markup.
    assert "<script" not in lowered and "<iframe" not in lowered and "<style" not in lowered
    parser = Collect()
    parser.feed(output)
    parser.close()
    for tag, attrs in parser.tags:
        assert tag not in {
            "script",
            "style",
            "iframe",
            "object",
            "embed",
            "svg",
            "math",
            "form",
            "input",
            "button",
            "link",
            "meta",
            "base",
            "frame",
            "frameset",
        }
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            decoded = htmllib.unescape(value or "")
            compact = "".join(decoded.split()).lower()
            assert "javascript:" not in compact and "vbscript:" not in compact
            assert "expression(" not in compact and "url(" not in compact
            if name in URL_ATTRIBUTES and ":" in compact.split("/", 1)[0]:
                assert compact.startswith(SAFE_SCHEMES), (tag, name, value)
            assert not compact.startswith("data:")


ATTACKS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<a href="&#106;&#97;vascript:alert(1)">x</a>',
    '<a href=" javascript:alert(1)">x</a>',
    '<iframe src="https://evil.example"></iframe>',
    '<object data="x.swf"></object><embed src="x">',
    "<svg><script>alert(1)</script></svg>",
    "<svg onload=alert(1)>",
    '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
    '<div style="background:url(javascript:alert(1))">x</div>',
    '<div style="width: expression(alert(1))">x</div>',
    '<a href="data:text/html;base64,PHNjcmlwdD4=">x</a>',
    '<img src="data:image/png;base64,AAAA">',
    "<style>body{background:url(javascript:alert(1))}</style>",
    '<form action="https://evil.example"><input name=p></form>',
    "<body onload=alert(1)>",
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    '<base href="javascript:alert(1)//">',
    "<scr<script>ipt>alert(1)</script>",
    "<!--<script>alert(1)</script>-->",
    '<a href="vbscript:msgbox(1)">x</a>',
    "<details open ontoggle=alert(1)>",
    '<p title="&quot;><script>alert(1)</script>">x</p>',
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_known_attacks_are_neutralized(attack: str) -> None:
    assert_safe(sanitize_html(attack))
    assert_safe(sanitize_html(attack, remote_images=True))


def test_the_checker_catches_raw_attacks() -> None:
    for attack in ATTACKS[:5] + ATTACKS[12:16]:
        with pytest.raises(AssertionError):
            assert_safe(attack)


def test_formatting_and_safe_links_survive() -> None:
    html = (
        '<p style="color: red; position: fixed">Hi <b>there</b> <a href="https://shop.example/o/1">'
        'order</a> <a href="mailto:help@shop.example">mail</a></p>'
        "<table><tr><td>1</td></tr></table>"
    )
    out = sanitize_html(html)
    assert '<p style="color:red">' in out
    assert '<a href="https://shop.example/o/1" rel="noopener noreferrer nofollow">order</a>' in out
    assert 'href="mailto:help@shop.example"' in out
    assert "<table><tbody><tr><td>1</td></tr></tbody></table>" in out
    assert "position" not in out


def test_script_and_style_bodies_are_dropped_not_shown() -> None:
    out = sanitize_html("<p>a</p><script>var secret = 1;</script><style>p{color:red}</style>")
    assert out == "<p>a</p>"


def test_images_remote_and_cid() -> None:
    html = '<img src="https://track.example/p.gif" alt="t"><img src="cid:logo@x" alt="logo">'
    assert sanitize_html(html) == '<img alt="t"><img alt="logo">'
    assert 'src="https://track.example/p.gif"' in sanitize_html(html, remote_images=True)
    mapped = sanitize_html(html, cid_urls={"<logo@x>": "https://bridge.example/a/1"})
    assert '<img src="https://bridge.example/a/1" alt="logo">' in mapped
    hostile = sanitize_html(html, cid_urls={"logo@x": "javascript:alert(1)"})
    assert "javascript" not in hostile


DANGER = st.sampled_from(
    [
        "<script>",
        "</script>",
        "<script src=//x>",
        "<scr",
        "ipt>",
        "<img",
        "<svg",
        "<iframe",
        "<a",
        "<div",
        "<style>",
        "<object",
        "<embed",
        "<math",
        "<body",
        "<form",
        ">",
        "/>",
        "<",
        " onerror=",
        " onload=",
        " OnClick=",
        " onmouseover\t=",
        " href=",
        " src=",
        " style=",
        " xlink:href=",
        ' action="',
        "javascript:",
        "JAVASCRIPT:",
        "java\tscript:",
        "java&#x0A;script:",
        "&#106;avascript:",
        "&#x6A;avascript:",
        "data:text/html,",
        "vbscript:",
        "cid:",
        "alert(1)",
        "url(",
        "expression(",
        '"',
        "'",
        "`",
        "=",
        "&",
        "&lt;",
        "&gt;",
        "&#60;",
        "<!--",
        "-->",
        "<![CDATA[",
        "]]>",
        "\x00",
        " ",
        "\n",
        "https://ok.example/",
        "mailto:x@y",
    ]
)


@st.composite
def adversarial(draw: st.DrawFn) -> str:
    return "".join(draw(st.lists(DANGER | st.text(max_size=4), max_size=40)))


@settings(max_examples=200)
@given(adversarial(), st.booleans())
def test_adversarial_snippets_never_survive(html: str, remote: bool) -> None:
    assert_safe(sanitize_html(html, remote_images=remote))


@given(st.text(max_size=400))
def test_arbitrary_text_is_safe(html: str) -> None:
    assert_safe(sanitize_html(html))


@given(adversarial())
def test_sanitizing_is_stable(html: str) -> None:
    once = sanitize_html(html)
    assert_safe(sanitize_html(once))
