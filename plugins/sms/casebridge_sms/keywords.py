"""Opt-out, opt-in and help keywords in an inbound SMS body.

A body is a keyword only when the keyword is the whole message: case is ignored, and so are
whitespace, punctuation and invisible characters around it ("Stop.", " STOP!! "). A keyword
inside a sentence ("please stop texting me") is an ordinary message.
"""

from __future__ import annotations

import unicodedata
from enum import StrEnum


class Keyword(StrEnum):
    OPT_OUT = "opt-out"
    OPT_IN = "opt-in"
    HELP = "help"


KEYWORDS: dict[str, Keyword] = {
    **dict.fromkeys(
        ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"),
        Keyword.OPT_OUT,
    ),
    **dict.fromkeys(("START", "UNSTOP", "YES"), Keyword.OPT_IN),
    **dict.fromkeys(("HELP", "INFO"), Keyword.HELP),
}

# Unicode categories stripped around the word: punctuation, separators, controls, format.
_STRIPPED_CATEGORIES = ("P", "Z", "Cc", "Cf")


def _is_stripped(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch).startswith(_STRIPPED_CATEGORIES)


def classify(body: str) -> Keyword | None:
    """The keyword ``body`` consists of, or None for an ordinary message."""
    # NFKC folds full-width and other compatibility forms ("ＳＴＯＰ") to plain letters.
    text = unicodedata.normalize("NFKC", body)
    start, end = 0, len(text)
    while start < end and _is_stripped(text[start]):
        start += 1
    while end > start and _is_stripped(text[end - 1]):
        end -= 1
    return KEYWORDS.get(text[start:end].upper())
