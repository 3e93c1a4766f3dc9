"""The shortcuts that make reply trimming fast give the same answers as the plain tests.

Each test compares a shortcut with the straightforward definition it replaces: later
trimming passes that test only some lines against passes that test every line, reversed
end-anchored patterns against the forward patterns, prefilters against what they guard, and
HTML trimming without its confirming pass against trimming with it.
"""

from __future__ import annotations

import re

from casebridge_email import quote_patterns as qp
from casebridge_email import trim, trim_html
from casebridge_email.trim_html import visible_html
from casebridge_email.trim_large import visible_large
from hypothesis import given, settings
from hypothesis import strategies as st
from selectolax.lexbor import LexborHTMLParser

# Lines that exercise headers (wrapped too), Outlook blocks, separators and signatures.
_LINES = st.sampled_from(
    [
        "> quoted line",
        ">> nested",
        "",
        "",
        "Hello there, this is a reply.",
        "Short",
        "On Mon, Jan 6, 2025 at 9:00 AM Ann <ann@example.com> wrote:",
        "On Mon, Jan 6, 2025 at 9:00 AM Ann",
        "<ann@example.com> wrote:",
        "> wrote:",
        "Ann wrote:",
        "Am 06.01.2025 um 09:00 schrieb Ann:",
        "Great, thanks!On Tue, 7 Jan 2025 at 10:00, Ann <ann@example.com> wrote:",
        "-----Original Message-----",
        "---------- Forwarded message ---------",
        "From: Ann <ann@example.com>",
        "Sent: Monday, January 6, 2025 9:00 AM",
        "To: Bob",
        "Subject: Re: hello",
        "-- ",
        "--",
        "-----",
        "________________________________",
        "Sent from my iPhone",
        "Thanks,",
        "Regards",
        "Best,",
        "Viele Grüße",
        "Bob",
        "Ann Lee",
        "Acme Ltd",
        "-Bob",
        "- bob",
        "-roman",
        "- item one",
        "Note:",
    ]
)
_MESSAGES = st.lists(st.one_of(_LINES, st.text(max_size=30)), max_size=40)


def _trim_every_line(lines: list[str], keep_signature: bool) -> list[str]:
    """The trimming loop with every pass testing every line (what ``_trim`` shortcuts)."""
    current = lines
    for _ in range(trim._MAX_PASSES):
        trimmed, _ = trim._trim_pass(current, keep_signature)
        if not any(trimmed):
            return [] if current is lines else current
        if trimmed == current:
            break
        current = trimmed
    return current


@settings(max_examples=200)
@given(_MESSAGES, st.booleans())
def test_passes_that_recheck_some_lines_match_passes_that_test_all(
    raw: list[str], keep: bool
) -> None:
    lines = trim.normalize_lines("\n".join(raw))
    assert trim._trim(lines, keep) == _trim_every_line(lines, keep)


@settings(max_examples=200)
@given(_MESSAGES, st.booleans())
def test_a_pass_testing_only_the_recheck_lines_is_a_full_pass(raw: list[str], keep: bool) -> None:
    lines = trim.normalize_lines("\n".join(raw))
    out, src = trim._trim_pass(lines, keep)
    if not any(out):
        return
    check = trim._lines_to_recheck(out, src, len(lines), keep)
    full = trim._trim_pass(out, keep)
    if check:
        assert trim._trim_pass(out, keep, check) == full
    else:
        assert full[0] == out


# Forward patterns, as written before they were kept reversed.
_WROTE = qp._phrases(qp._WROTE_WORDS)
_VERB_END = re.compile(rf"(?:^|[\s,)>»\"'])(?:{_WROTE})\s*[:：]?\s*-*$", re.IGNORECASE)
_CJK_VERB_END = re.compile(r"(?:写道|寫道|のメッセージ|작성)\s*[:：]?$")
_VERB_THEN_DATE = re.compile(
    rf"(?:^|\s)(?:{qp._phrases(qp._VERBS_BEFORE_DATE)})\s+"
    rf"(?:{qp._phrases(qp._DATE_PREPOSITIONS)})\s+[^:：]{{0,40}}\d.{{0,20}}[:：]$",
    re.IGNORECASE,
)
_ADDRESS_COLON_END = re.compile(r"(?:>|@[\w.\-]+\)?|\"|»)\s*[:：]$")
_HAS_ADDRESS = re.compile(r"@|<[^>]*>|\bmailto:")

_PIECES = st.sampled_from(
    [
        *qp._WROTE_WORDS,
        *qp._VERBS_BEFORE_NAME,
        *qp._DATE_PREPOSITIONS,
        "WROTE",
        "Schrieb",
        "On",
        "Am",
        "Ann",
        ":",
        "：",
        "-",
        "---",
        " ",
        "\t",
        "<",
        ">",
        "@",
        "a@b.c",
        "mailto:",
        "xmailto:",
        '"',
        "»",
        ")",
        "(",
        ",",
        "'",
        "2025",
        "09:14",
        "6.1.",
        "9h14",
        "x",
    ]
)
# One line (no line breaks: the reversed patterns are for single lines).
_HEADERISH = st.lists(st.one_of(_PIECES, st.text(max_size=3)), max_size=14).map(
    lambda parts: "".join(parts).replace("\n", " ").replace("\r", " ")
)


@settings(max_examples=200)
@given(_HEADERISH)
def test_reversed_patterns_match_the_forward_ones(text: str) -> None:
    backwards = text[::-1]
    assert bool(qp._VERB_END_REVERSED.match(backwards)) == bool(_VERB_END.search(text))
    assert bool(qp._CJK_VERB_END_REVERSED.match(backwards)) == bool(_CJK_VERB_END.search(text))
    assert bool(qp._VERB_THEN_DATE_REVERSED.match(backwards)) == bool(_VERB_THEN_DATE.search(text))
    assert bool(qp._ADDRESS_COLON_END_REVERSED.match(backwards)) == bool(
        _ADDRESS_COLON_END.search(text)
    )


@settings(max_examples=200)
@given(_HEADERISH)
def test_header_prefilters_agree_with_their_patterns(text: str) -> None:
    assert qp._has_address(text) == bool(_HAS_ADDRESS.search(text))
    assert qp._has_dateish(text) == bool(qp._HAS_DATEISH.search(text))
    if text.endswith((":", "：")):
        assert qp._date_verb_name(text) == bool(qp._DATE_VERB_NAME.match(text))
    assert qp.is_separator(text) == bool(qp.SEPARATOR.match(text))


_SEPARATORISH = st.lists(
    st.sampled_from(["-", "=", "_", "*", " ", "Original Message", "Forwarded message", ":"]),
    max_size=12,
).map("".join)


@given(_SEPARATORISH)
def test_separator_prefilter_agrees_with_the_pattern(text: str) -> None:
    assert qp.is_separator(text) == bool(qp.SEPARATOR.match(text))


@given(st.one_of(_LINES, _HEADERISH, st.text(max_size=40)))
def test_may_matter_accepts_whatever_a_rule_may_act_on(line: str) -> None:
    if qp.may_mark_quote(line) or qp.could_start_header(line) or qp.may_open_signature(line):
        assert qp.may_matter(line)


def test_may_matter_follows_lower_case_mapping_of_every_letter() -> None:
    # Any character whose lower case is a letter of a signature or intro word still counts.
    words = [*qp._SIGNATURE_STARTS, *qp._INTRO_WORDS]
    letters = {ch for word in words for ch in word}
    upper = {
        chr(code)
        for code in range(0x110000)
        if not 0xD800 <= code <= 0xDFFF and chr(code).lower() in letters
    }
    for word in words:
        for index, ch in enumerate(word):
            for variant in upper:
                if variant.lower() != ch:
                    continue
                line = word[:index] + variant + word[index + 1 :] + " x"
                if qp.may_open_signature(line) or qp.could_start_header(line):
                    assert qp.may_matter(line), line


def test_signature_needing_context_covers_the_context_rules() -> None:
    for line in ["-----", "____", "  ---"]:
        assert qp.signature_needs_context(line)
    # Closings are the customer's and never a signature; the rest is decided on the line.
    for line in ["Thanks,", "Regards", "-Bob", "-roman", "- bob", "Sent from my iPhone", "--"]:
        assert not qp.signature_needs_context(line)


@settings(max_examples=200)
@given(st.lists(_LINES, max_size=8), _LINES, st.lists(_LINES, max_size=8))
def test_signature_prefilters_agree_with_the_full_test(
    before: list[str], line: str, after: list[str]
) -> None:
    # Where signature_needs_context says no, the answer is the line's own, whatever surrounds it.
    lines = [*before, line, *after]
    starts = trim._Scan(lines).signature_starts(len(before))
    if not qp.may_open_signature(line):
        assert not starts
    elif not qp.signature_needs_context(line):
        assert starts == qp.opens_signature(line)


# HTML with the markup the passes react to, Outlook's border-top block among it.
_WORDS = st.sampled_from(
    [
        "hello there",
        "From: Ann <a@b.c>",
        "Sent: Monday",
        "To: Bob",
        "Subject: hi",
        "On Mon, Jan 6, 2025 at 9:14 AM Ann <ann@example.com> wrote:",
        "-----Original Message-----",
        "<br>",
        "<hr>",
        "Thanks",
        "<blockquote>one<br>two<br>three</blockquote>Subject: hi",
    ]
)
_TAGS = [
    "<div>",
    "<p>",
    "<blockquote>",
    '<div class="gmail_quote">',
    '<div class="gmail_extra">',
    '<div id="divRplyFwdMsg">',
    '<div style="border:none;border-top:solid #E1E1E1 1.0pt">',
]


def _element(parts: tuple[str, list[str]]) -> str:
    tag, children = parts
    name = tag[1:].split(">")[0].split()[0]
    return tag + "".join(children) + f"</{name}>"


_HTML = st.recursive(
    _WORDS,
    lambda inner: st.tuples(st.sampled_from(_TAGS), st.lists(inner, max_size=4)).map(_element),
    max_leaves=16,
)


def _visible_html_confirming(html: str) -> str:
    """``visible_html`` with a confirming pass after every change and text looked for by
    walking the tree again (what ``visible_html`` shortcuts)."""
    tree = LexborHTMLParser(html)
    if tree.body is None:
        return html
    result = html
    for _ in range(trim_html._MAX_PASSES):
        outcome = trim_html._trim_tree(tree)
        root = tree.root
        if not outcome.changed or root is None or not trim_html._text_lines(root):
            break
        result = tree.html or ""
    return result


@settings(max_examples=200)
@given(st.lists(_HTML, min_size=1, max_size=4).map("".join))
def test_html_without_confirming_pass_matches_with_it(html: str) -> None:
    assert visible_html(html) == _visible_html_confirming(html)


def test_border_top_block_found_once_a_quote_inside_it_is_gone() -> None:
    # The Outlook block's first lines are quoted at first; its "Subject:" line shows only
    # after the quote is removed, so a second pass has to cut it.
    html = (
        "<p>Hi</p><div style='border-top:solid 1pt'>"
        "<blockquote>one<br>two<br>three</blockquote>Subject: hi<br>more</div>"
    )
    assert trim_html.html_to_text(visible_html(html)) == "Hi"
    assert visible_html(html) == _visible_html_confirming(html)



# Mostly lines no rule acts on (short and long, with whitespace to tidy), so that long
# runs of them far from any other line become placeholders; now and then one that matters.
_PLAIN_LINES = st.sampled_from(
    ["printer error firmware update", "  indented line", "trailing spaces   ", "\t", "", "",
     "Hello there, this is a reply.", "Ann Lee", " \u00a0", "x\x0b", "Bob",
     "retry printer status queue timeout error tray error queue network update update",
     "   a long indented line that is longer than forty characters in all"]
)
_MOSTLY_PLAIN = st.lists(
    st.one_of(_PLAIN_LINES, _PLAIN_LINES, _PLAIN_LINES, _PLAIN_LINES, _LINES,
              st.text(max_size=12)), max_size=60)


@settings(max_examples=400)
@given(_MOSTLY_PLAIN, st.sampled_from(["\n", "\r\n", "\r"]), st.booleans())
def test_large_text_trimming_keeps_what_visible_text_keeps(
    raw: list[str], eol: str, keep: bool
) -> None:
    text = eol.join(raw)
    got = visible_large(text, keep_signature=keep)
    expected = trim.visible_text(text, keep_signature=keep)
    if got is text:
        # Kept as sent: visible_text only tidies it.
        assert expected == "\n".join(trim.normalize_lines(text))
    else:
        assert got == expected


def test_large_text_trimming_keeps_an_untouched_text_as_it_is() -> None:
    log = "Here is the log:\r\n\r\n" + "printer error line  \r\n" * 50
    assert visible_large(log) is log
    quoted = log + "\r\nOn Mon, Jan 6, 2025 at 9:00 AM Ann <ann@example.com> wrote:\r\n> x"
    assert visible_large(quoted) == trim.visible_text(quoted) == trim.visible_text(log)
    assert trim.visible_text(log).endswith("printer error line")


def test_large_text_trimming_holds_a_fraction_of_what_visible_text_holds() -> None:
    """A large log trimmed on placeholders holds less than the text's size beside it, and
    under a quarter of what visible_text's list of lines and join hold."""
    import tracemalloc

    from casebridge_email.trim_large import _LONG, _SHORT, _Lines

    log = "Here is the log:\n\n" + "retry printer status queue timeout error tray\n" * 40_000
    lines = _Lines(log)
    compact = lines.compact(0, len(lines.kinds))
    assert sum(1 for line in compact if line is _SHORT or line is _LONG) > 39_000
    del lines, compact
    peaks = []
    for trimmer in (visible_large, trim.visible_text):
        tracemalloc.start()
        try:
            trimmer(log)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[0] < len(log) and peaks[0] * 4 < peaks[1], peaks
