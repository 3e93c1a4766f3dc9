"""The GSM-7 alphabet (3GPP TS 23.038 default alphabet and its extension table) and the
look-alike map used by smart encoding.

Everything here is data plus tiny lookups; :mod:`casebridge_sms.segments` does the counting.
"""

from __future__ import annotations

# The default alphabet, indexed by septet value. 0x1B is the escape to the extension table,
# not a character, so it holds a placeholder that is removed from the lookups below.
_ESCAPE = "\x1b"
BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ" + _ESCAPE + "ÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(BASIC_TABLE) == 128

# Extension table: character -> code after the escape. Each costs two septets on the air.
EXTENSION_TABLE: dict[str, int] = {
    "\x0c": 0x0A,  # FORM FEED (page break)
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}

BASIC_CODES: dict[str, int] = {ch: code for code, ch in enumerate(BASIC_TABLE) if ch != _ESCAPE}
BASIC_CHARS: frozenset[str] = frozenset(BASIC_CODES)
EXTENSION_CHARS: frozenset[str] = frozenset(EXTENSION_TABLE)
GSM_CHARS: frozenset[str] = BASIC_CHARS | EXTENSION_CHARS


def non_gsm_characters(text: str) -> list[str]:
    """The characters of ``text`` (in order, with repeats) that force UCS-2."""
    return [ch for ch in text if ch not in GSM_CHARS]


def encode(text: str) -> bytes:
    """Unpacked GSM-7: one septet per byte, extension characters as ``0x1B`` + code.

    Raises ValueError naming the first character that GSM-7 cannot carry and its index.
    """
    out = bytearray()
    for index, ch in enumerate(text):
        code = BASIC_CODES.get(ch)
        if code is not None:
            out.append(code)
            continue
        ext = EXTENSION_TABLE.get(ch)
        if ext is None:
            raise ValueError(f"{ch!r} (U+{ord(ch):04X}) at index {index} is not a GSM-7 character")
        out += bytes((0x1B, ext))
    return bytes(out)


def _entries(target: str, sources: str) -> dict[str, str]:
    return dict.fromkeys(sources, target)


# Smart encoding: look-alike characters a phone keyboard or a word processor produces, each
# mapped to the GSM-7 text that reads the same. Only typography is mapped: accented letters
# outside GSM-7 are left alone (dropping an accent can change a word's meaning), so such text
# still goes out as UCS-2. Twilio's published map was the starting point; where it does
# something surprising we chose plainly instead: every space-like character becomes ONE space
# (Twilio: two, and seven for TAB), control codes are dropped (Twilio: two spaces for some),
# "‹" / "›" become "<" / ">" (Twilio swaps them), "‗" becomes "_", "‚" (a low opening quote)
# becomes "'", and combining marks are not mapped (a combining tilde belongs to a letter).
SMART_MAP: dict[str, str] = {
    **_entries('"', "«»“”„‟ʺˮ❝❞〝〞＂"),
    **_entries("'", "‘’‚‛ʻʼʽʹˈˊˋ´`❛❜︐︑＇′"),
    **_entries("-", "‐‑‒–—―⁃﹣－⎼⎽•∙"),
    **_entries("/", "÷⁄∕⧸／"),
    **_entries("\\", "⧹⧵﹨＼"),
    **_entries("_", "‗＿"),
    **_entries("|", "∣｜⎸⎹⏐⎜⎟"),
    **_entries("@", "﹫＠"),
    **_entries("$", "﹩＄"),
    **_entries("!", "ǃ︕﹗！"),
    **_entries("#", "﹟＃"),
    **_entries("%", "﹪％"),
    **_entries("&", "﹠＆"),
    **_entries(",", "﹐﹑，､、"),
    **_entries("(", "❨❪﹙（⟮⦅"),
    **_entries(")", "❩❫﹚）⟯⦆"),
    **_entries("*", "⁎∗⊛✢✣✤✥✱✲✳✺✻✼✽❃❉❊❋⧆﹡＊"),
    **_entries("+", "˖﹢＋"),
    **_entries(".", "。﹒．｡"),
    **_entries(":", "ː˸⦂꞉︓："),
    **_entries(";", "⁏︔﹔；"),
    **_entries("<", "‹﹤＜"),
    **_entries(">", "›﹥＞"),
    **_entries("=", "꞊﹦＝"),
    **_entries("?", "︖﹖？"),
    **_entries("^", "ˆ＾"),
    **_entries("{", "❴﹛｛"),
    **_entries("}", "❵﹜｝"),
    **_entries("[", "［"),
    **_entries("]", "］"),
    **_entries("~", "˜˷∼～"),
    # Full-width digits and letters, and Latin small capitals, read as the plain ones.
    **{chr(0xFF10 + i): str(i) for i in range(10)},
    **{chr(0xFF21 + i): chr(ord("A") + i) for i in range(26)},
    **{chr(0xFF41 + i): chr(ord("a") + i) for i in range(26)},
    **dict(zip("ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘʀꜱᴛᴜᴠᴡʏᴢ", "ABCDEFGHIJKLMNOPRSTUVWYZ", strict=True)),
    "¼": "1/4",
    "½": "1/2",
    "¾": "3/4",
    "…": "...",
    "‼": "!!",
    # Spaces of every width, and line/paragraph separators, are one plain space.
    **_entries(" ", "\t\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"),
    **_entries(" ", "\u2009\u200a\u202f\u205f\u3000\u2028\u2029"),
    # Invisible characters and stray control codes carry nothing a reader would see.
    **_entries("", "\u200b\u200c\u200d\u2060\ufeff\u00ad"),
    **_entries("", "".join(chr(c) for c in range(0x20) if chr(c) not in "\t\n\r\x0c")),
    **_entries("", "\x7f" + "".join(chr(c) for c in range(0x80, 0xA0))),
}

_SMART_TABLE = str.maketrans(SMART_MAP)


def smart_encode(text: str) -> str:
    """``text`` with every look-alike in :data:`SMART_MAP` replaced by its GSM-7 reading.

    Characters not in the map are kept, so the result may still need UCS-2.
    """
    return text.translate(_SMART_TABLE)
