"""How a text goes out as SMS: its encoding and the parts a phone network carries.

GSM-7 when every character is in the GSM-7 default alphabet or its extension table, else
UCS-2. One part holds 160 septets or 70 UTF-16 code units; a concatenated message loses room
to the 6-byte header in each part, leaving 153 septets or 67 code units. A character is
never cut in two: an extension-table character (2 septets) or an astral character (a
surrogate pair, 2 code units) that does not fit in what is left of a part starts the next.

Empty text is one empty GSM-7 part, as Twilio's segment calculator, Android and Gecko count
it (a message that is sent at all takes at least one part).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from casebridge_sms.gsm import EXTENSION_CHARS, GSM_CHARS, smart_encode

Encoding = Literal["GSM-7", "UCS-2"]

SINGLE_PART_UNITS: dict[Encoding, int] = {"GSM-7": 160, "UCS-2": 70}
MULTI_PART_UNITS: dict[Encoding, int] = {"GSM-7": 153, "UCS-2": 67}


@dataclass(frozen=True, slots=True)
class Segmentation:
    """The result of :func:`segment`.

    ``parts`` joined give back the text that is sent (after smart encoding, if asked).
    ``units`` is the message's size in septets (GSM-7) or UTF-16 code units (UCS-2);
    ``per_segment`` the capacity of one part of this message (160/153 or 70/67);
    ``remaining`` the units still free in the last part.
    """

    encoding: Encoding
    segments: int
    parts: tuple[str, ...]
    units: int
    per_segment: int
    remaining: int

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict of every field (``parts`` as a list)."""
        return {
            "encoding": self.encoding,
            "segments": self.segments,
            "parts": list(self.parts),
            "units": self.units,
            "per_segment": self.per_segment,
            "remaining": self.remaining,
        }


def char_units(ch: str, encoding: Encoding) -> int:
    """Units one character takes: septets in GSM-7, UTF-16 code units in UCS-2."""
    if encoding == "GSM-7":
        return 2 if ch in EXTENSION_CHARS else 1
    return 2 if ord(ch) > 0xFFFF else 1


def segment(text: str, *, smart: bool = False) -> Segmentation:
    """Split ``text`` into the fewest SMS parts.

    With ``smart=True`` look-alike characters (curly quotes, dashes, odd spaces, ...) are
    first replaced by GSM-7 ones (:func:`casebridge_sms.gsm.smart_encode`), which often keeps
    a message in GSM-7 and so in fewer parts.
    """
    if not isinstance(text, str):
        raise TypeError(f"segment() needs a str, not {type(text).__name__}")
    if smart:
        text = smart_encode(text)
    encoding: Encoding
    if GSM_CHARS.issuperset(text):
        encoding = "GSM-7"
        units = len(text) + sum(1 for ch in text if ch in EXTENSION_CHARS)
    else:
        encoding = "UCS-2"
        # surrogatepass: a lone surrogate (possible in a Python str) still counts one unit.
        units = len(text.encode("utf-16-le", "surrogatepass")) // 2

    single = SINGLE_PART_UNITS[encoding]
    if units <= single:
        return Segmentation(encoding, 1, (text,), units, single, single - units)

    budget = MULTI_PART_UNITS[encoding]
    if units == len(text):
        # Every character is one unit: plain slicing is the greedy split.
        parts = [text[i : i + budget] for i in range(0, len(text), budget)]
        used = len(parts[-1])
    else:
        parts, used = _greedy(text, encoding, budget)
    return Segmentation(encoding, len(parts), tuple(parts), units, budget, budget - used)


def _greedy(text: str, encoding: Encoding, budget: int) -> tuple[list[str], int]:
    """Fill each part as far as it goes. Greedy is optimal here: the characters keep their
    order, so packing the most into each part can only leave less for the parts after it."""
    parts: list[str] = []
    start = 0
    used = 0
    for index, ch in enumerate(text):
        cost = char_units(ch, encoding)
        if used + cost > budget:
            parts.append(text[start:index])
            start = index
            used = 0
        used += cost
    parts.append(text[start:])
    return parts, used
