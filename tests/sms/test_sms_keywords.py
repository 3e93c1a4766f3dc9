import unicodedata

import pytest
from casebridge_sms.keywords import KEYWORDS, Keyword, classify
from hypothesis import given
from hypothesis import strategies as st

keyword_words = st.sampled_from(sorted(KEYWORDS))
padding = st.text(alphabet=" \t\n\r.,!?;:-'\"()¡¿…\u00a0\u200b", max_size=6)


def random_case(word: str, flips: list[bool]) -> str:
    return "".join(c.lower() if flip else c for c, flip in zip(word, flips, strict=False))


@given(keyword_words, st.lists(st.booleans(), min_size=12, max_size=12), padding, padding)
def test_keyword_alone_is_recognised_in_any_case_and_punctuation(
    word: str, flips: list[bool], before: str, after: str
) -> None:
    body = before + random_case(word, flips) + after
    assert classify(body) is KEYWORDS[word]


@given(
    keyword_words,
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8),
    st.booleans(),
)
def test_keyword_inside_a_sentence_is_a_message(word: str, other: str, first: bool) -> None:
    body = f"{word} {other}" if first else f"{other} {word}"
    assert classify(body) is None


@given(st.text(max_size=30))
def test_a_keyword_result_means_the_letters_are_exactly_that_keyword(body: str) -> None:
    result = classify(body)
    letters = "".join(ch for ch in unicodedata.normalize("NFKC", body).upper() if ch.isalnum())
    if result is not None:
        assert KEYWORDS[letters] is result


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("STOP", Keyword.OPT_OUT),
        ("  stop.  ", Keyword.OPT_OUT),
        ("Unsubscribe!", Keyword.OPT_OUT),
        ("optout", Keyword.OPT_OUT),
        ("ＳＴＯＰ", Keyword.OPT_OUT),
        ("Start", Keyword.OPT_IN),
        ("yes!", Keyword.OPT_IN),
        ("unstop", Keyword.OPT_IN),
        ("help?", Keyword.HELP),
        ("INFO", Keyword.HELP),
        ("please stop", None),
        ("stop stop", None),
        ("opt out", None),
        ("stopping", None),
        ("", None),
        ("...", None),
    ],
)
def test_examples(body: str, expected: Keyword | None) -> None:
    assert classify(body) is expected
