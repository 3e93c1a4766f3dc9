"""Properties of reply trimming that hold for every input."""

from __future__ import annotations

import re

from casebridge_email.trim import html_to_text, normalize_lines, visible_html, visible_text
from hypothesis import given, settings
from hypothesis import strategies as st

_LINE_BREAK = re.compile(r"\r\n|\r|\n")

# Lines that can hold a quote marker, so the interesting paths get exercised.
_MARKER_LINES = st.sampled_from(
    [
        "> quoted line",
        ">> nested",
        "On Mon, Jan 6, 2025 at 9:00 AM Ann <ann@example.com> wrote:",
        "On Mon, Jan 6, 2025 at 9:00 AM Ann",
        "<ann@example.com> wrote:",
        "Am 06.01.2025 um 09:00 schrieb Ann:",
        "-----Original Message-----",
        "From: Ann <ann@example.com>",
        "Sent: Monday, January 6, 2025 9:00 AM",
        "To: Bob",
        "Subject: Re: hello",
        "-- ",
        "--",
        "Sent from my iPhone",
        "Get Outlook for iOS",
        "Thanks,",
        "Best,",
        "Viele Grüße",
        "Bob",
        "Anna Smith",
        "- ann",
        "-Bob",
        "________________________________",
        "---------- Forwarded message ---------",
        "",
        "   ",
        "Hello there, this is a reply.",
        "Great, thanks!On Tue, 7 Jan 2025 at 10:00, Ann <ann@example.com> wrote:",
    ]
)
_MESSAGES = st.one_of(
    st.text(),
    st.lists(st.one_of(_MARKER_LINES, st.text(max_size=40)), max_size=30).map("\n".join),
)

# Text that cannot contain a quote marker: no ">", ":", "-", "_", "<", "@", rule characters,
# upper case (mobile footers and names start upper case) or non-ASCII.
_PLAIN_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 .,!?'\t"
_PLAIN_TEXT = st.lists(st.text(alphabet=_PLAIN_ALPHABET, max_size=60), max_size=20).map(
    "\n".join
)


def _maps_into(output: str, source: str) -> bool:
    """Whether the lines of ``output`` are, in order, lines of ``source`` without trailing
    whitespace, the last possibly cut short (a quote header sharing its line)."""
    source_lines = [line.rstrip() for line in _LINE_BREAK.split(source)]
    out_lines = output.split("\n") if output else []
    j = 0
    for index, line in enumerate(out_lines):
        last = index == len(out_lines) - 1
        while j < len(source_lines) and not (
            source_lines[j] == line or (last and line and source_lines[j].startswith(line))
        ):
            j += 1
        if j == len(source_lines):
            return False
        j += 1
    return True


def _is_char_subsequence(small: str, big: str) -> bool:
    chars = iter(re.sub(r"\s", "", big))
    return all(c in chars for c in re.sub(r"\s", "", small))


@given(_MESSAGES, st.booleans())
def test_visible_text_never_adds_text(text: str, keep: bool) -> None:
    assert _maps_into(visible_text(text, keep_signature=keep), text)


@given(_MESSAGES, st.booleans())
def test_visible_text_is_idempotent(text: str, keep: bool) -> None:
    once = visible_text(text, keep_signature=keep)
    assert visible_text(once, keep_signature=keep) == once


@given(_PLAIN_TEXT, st.booleans())
def test_text_without_markers_comes_back(text: str, keep: bool) -> None:
    assert visible_text(text, keep_signature=keep) == "\n".join(normalize_lines(text))


@given(_MESSAGES)
def test_something_is_always_left_when_the_input_has_text(text: str) -> None:
    if text.strip():
        assert visible_text(text).strip()


# A customer's closing: a sign-off line, a name line, sometimes a company line.
_CLOSINGS = st.sampled_from(
    [
        "Best",
        "Best regards",
        "Kind regards",
        "Regards",
        "Thanks",
        "Thank you",
        "Cheers",
        "Sincerely",
        "Merci",
        "Cordialement",
        "Bien à vous",
        "Viele Grüße",
        "Gruß",
        "Mit freundlichen Grüßen",
        "Saludos",
        "Un saludo",
        "Saluti",
        "Groeten",
        "Pozdrawiam",
        "Hälsningar",
        "Hilsen",
        "С уважением",
        "谢谢",
        "よろしくお願いします",
    ]
)
_NAME_WORD = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("ABCDEFGHIJKLMNOPRSTUVWZÀÉÖÅŁАБВ"),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzéöåłабв", max_size=9),
)
_NAMES = st.one_of(
    st.lists(_NAME_WORD, min_size=1, max_size=3).map(" ".join),
    _NAME_WORD.map(lambda word: word[0] + "."),
)
_SIGN_OFFS = st.builds(
    lambda closing, mark, name, company: f"{closing}{mark}\n{name}" + company,
    _CLOSINGS,
    st.sampled_from(["", ",", "!", "."]),
    _NAMES,
    st.sampled_from(["", "\nAcme Ltd", "\nSupport Lead"]),
)
# New text with something on it and no quote marker in it.
_NEW_TEXT = _PLAIN_TEXT.filter(lambda text: text.strip() != "")
_TRAILERS = st.sampled_from(
    [
        "",
        "Sent from my iPhone",
        "Get Outlook for iOS",
        "Von meinem iPhone gesendet",
        "On Mon, Jan 6, 2025 at 9:00 AM Ann <ann@example.com> wrote:\n> hello\n> there",
        "> hello",
        "-- \nAnna Smith\n+1 555 0100",
        "-----Original Message-----\nFrom: Ann\nhello",
    ]
)


@given(_NEW_TEXT, _SIGN_OFFS, st.sampled_from(["\n", "\n\n"]), _TRAILERS)
def test_a_sign_off_under_new_text_is_kept(
    text: str, sign_off: str, gap: str, trailer: str
) -> None:
    reply = f"{text}{gap}{sign_off}"
    expected = "\n".join(normalize_lines(reply))
    assert visible_text(f"{reply}\n\n{trailer}\n") == expected
    if trailer.startswith(("-- ", "Sent", "Get", "Von")):
        assert visible_text(f"{reply}\n\n{trailer}\n", keep_signature=True) == "\n".join(
            normalize_lines(f"{reply}\n\n{trailer}")
        )


@given(_NEW_TEXT, st.sampled_from(["-- ", "--"]), st.lists(st.text(max_size=40), max_size=8))
def test_a_dash_dash_delimited_block_is_removed(
    text: str, delimiter: str, block: list[str]
) -> None:
    # A closing line of its own: a line ending in a "wrote" word ("schrieb") right above
    # "--" reads as a dash-fenced attribution, which is another rule.
    reply = f"{text}\nSee you."
    signature = "\n".join([delimiter, *block])
    assert visible_text(f"{reply}\n{signature}") == "\n".join(normalize_lines(reply))


def _is_line_subsequence(small: str, big: str) -> bool:
    lines = iter(big.split("\n"))
    return all(line in lines for line in small.split("\n"))


@given(_MESSAGES)
def test_keep_signature_never_removes_what_the_default_keeps(text: str) -> None:
    kept = visible_text(text, keep_signature=True)
    assert _is_line_subsequence(visible_text(text), kept)


def test_normalize_lines_definition() -> None:
    assert normalize_lines("\n  \r\nA  \r\n\tB\rC\n\n") == ["A", "\tB", "C"]


# HTML built from tags clients use for quotes and ordinary markup.
_SAFE_WORDS = st.text(alphabet="abcdefghij klmnop", min_size=1, max_size=12)
_OPEN_TAGS = [
    "<div>",
    "<p>",
    "<span>",
    "<blockquote>",
    '<div class="gmail_quote">',
    '<blockquote type="cite">',
    '<div class="moz-cite-prefix">',
    '<div class="yahoo_quoted">',
    '<div id="divRplyFwdMsg">',
    '<div style="border:none;border-top:solid #E1E1E1 1.0pt">',
    "<ul><li>",
]


def _wrap(inner: st.SearchStrategy[str], tags: list[str]) -> st.SearchStrategy[str]:
    def build(parts: tuple[str, list[str]]) -> str:
        tag, children = parts
        name = tag[1:].split(">")[0].split()[0]
        close = "</li></ul>" if name == "ul" else f"</{name}>"
        return tag + "".join(children) + close

    return st.tuples(st.sampled_from(tags), st.lists(inner, max_size=4)).map(build)


def _html(tags: list[str], words: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    leaves = st.one_of(words, st.just("<br>"), st.just("<b>bold</b>"), st.just("From: Ann"))
    return st.recursive(leaves, lambda inner: _wrap(inner, tags), max_leaves=20)


_ANY_HTML = st.one_of(st.text(max_size=200), _html(_OPEN_TAGS, _SAFE_WORDS))
_PLAIN_HTML = _html(["<div>", "<p>", "<span>", "<ul><li>"], _SAFE_WORDS)


@settings(max_examples=150)
@given(_ANY_HTML)
def test_visible_html_never_adds_text(html: str) -> None:
    assert _is_char_subsequence(html_to_text(visible_html(html)), html_to_text(html))


@settings(max_examples=150)
@given(_ANY_HTML)
def test_visible_html_is_idempotent(html: str) -> None:
    once = visible_html(html)
    assert visible_html(once) == once


@settings(max_examples=150)
@given(_PLAIN_HTML)
def test_html_without_quote_markup_keeps_its_text(html: str) -> None:
    assert html_to_text(visible_html(html)) == html_to_text(html)


@given(st.text())
def test_html_to_text_never_raises_and_has_no_blank_runs(text: str) -> None:
    rendered = html_to_text(text)
    assert "\n\n\n" not in rendered
    assert rendered == rendered.strip()
