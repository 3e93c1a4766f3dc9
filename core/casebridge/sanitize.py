"""Customer HTML made safe to show in the CRM and the session view (stored XSS otherwise).

An allowlist, not a blocklist: formatting tags, tables, links with http/https/mailto only,
a few harmless CSS properties. Scripts, styles, frames, forms, event handlers, javascript: and
data: URLs are gone. Images show only when their source is an allowed absolute URL: by default
remote images are dropped (tracking pixels), and ``cid:`` references are dropped unless
``cid_urls`` maps them to where the bridge serves the inline image.

A document nested deeper than :data:`~.html_depth.MAX_HTML_DEPTH` is not parsed (nh3's tree
building is quadratic in depth): its text, escaped, is all that is kept.
"""

from __future__ import annotations

import html as html_lib
from collections.abc import Mapping

import nh3

from .html_depth import flat_text, too_deep

TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "caption", "center", "cite", "code", "col",
        "colgroup", "dd", "del", "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5",
        "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "small",
        "span", "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th",
        "thead", "tr", "tt", "u", "ul",
    }
)  # fmt: skip
# Script and style bodies are dropped with their tags rather than shown as text.
DROPPED_WITH_CONTENT = frozenset({"script", "style", "title", "head", "template", "noscript"})
_COMMON = frozenset({"title", "lang", "dir", "style", "align"})
ATTRIBUTES: dict[str, set[str]] = {
    "*": set(_COMMON),
    "a": {"href", "hreflang"},
    "img": {"src", "alt", "width", "height"},
    "font": {"color", "face", "size"},
    "td": {"colspan", "rowspan", "valign", "width", "bgcolor"},
    "th": {"colspan", "rowspan", "valign", "width", "bgcolor", "scope"},
    "table": {"border", "cellpadding", "cellspacing", "width", "bgcolor"},
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
    "ol": {"start", "type"},
    "blockquote": {"cite"},
    "q": {"cite"},
}
STYLE_PROPERTIES = frozenset(
    {
        "color", "background-color", "font-weight", "font-style", "font-size", "font-family",
        "text-decoration", "text-align", "vertical-align", "line-height", "white-space",
        "margin", "margin-left", "margin-right", "margin-top", "margin-bottom", "padding",
        "padding-left", "padding-right", "padding-top", "padding-bottom", "border",
        "border-collapse", "width", "height",
    }
)  # fmt: skip
URL_SCHEMES = frozenset({"http", "https", "mailto"})
# Attribute values holding any of these are dropped whole: CSS url()/expression() and script
# schemes hidden in titles or query strings are never needed to read a support mail.
SUSPICIOUS = ("javascript:", "vbscript:", "data:", "url(", "expression(", "@import", "\\")


def sanitize_html(
    html: str, *, remote_images: bool = False, cid_urls: Mapping[str, str] | None = None
) -> str:
    """Sanitized ``html``: safe to insert into a page as it is.

    ``remote_images`` keeps ``<img src="https://...">``; ``cid_urls`` maps a Content-ID
    (without angle brackets) to the http(s) URL that serves that inline image. A document
    too deeply nested to parse comes back as its escaped text in paragraphs.
    """
    if too_deep(html):
        return _escaped_paragraphs(flat_text(html))
    cids = {k.strip("<>"): v for k, v in (cid_urls or {}).items()}

    def filter_attribute(tag: str, attribute: str, value: str) -> str | None:
        # cid: passes nh3's scheme check (see below) only so that it can be mapped here.
        scheme = value.partition(":")[0].strip().lower()
        if tag == "img" and attribute == "src":
            if scheme == "cid":
                url = cids.get(value.partition(":")[2].strip().strip("<>"), "")
                return url if url.lower().startswith(("https://", "http://")) else None
            return value if remote_images else None
        if scheme == "cid" or any(s in "".join(value.split()).lower() for s in SUSPICIOUS):
            return None
        return value

    return nh3.clean(
        html,
        tags=set(TAGS),
        clean_content_tags=set(DROPPED_WITH_CONTENT),
        attributes={k: set(v) for k, v in ATTRIBUTES.items()},
        attribute_filter=filter_attribute,
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
        url_schemes={*URL_SCHEMES, "cid"},
        url_relative="deny",
        filter_style_properties=set(STYLE_PROPERTIES),
    )


def _escaped_paragraphs(text: str) -> str:
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    return "".join("<p>" + html_lib.escape(p).replace("\n", "<br>") + "</p>" for p in paragraphs)
