"""Text in mail: body bytes in any declared charset, header words, message ids and file
names, decoded or made safe whatever the sender wrote. Pure, no I/O; :mod:`.mime` uses it.
"""

from __future__ import annotations

import codecs
import mimetypes
import re
import unicodedata
from email.header import decode_header, make_header

import charset_normalizer

MAX_FILENAME = 180
# Codecs (as codecs.lookup names them) whose C decoder reads any buffer, a memoryview too.
_IN_PLACE_CODECS = frozenset(("utf-8", "ascii", "iso8859-1"))
_SURROGATES = re.compile("[\udc80-\udcff]")
_MSGID = re.compile(r"<([^<>\s]+)>")
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]+')


def decode_text(data: bytes | memoryview, charset: str | None) -> tuple[str, str | None]:
    """Decode body bytes: the declared charset, then UTF-8, then detection, then UTF-8 with
    replacement characters. Returns the text and a note when the declared charset failed."""
    declared = (charset or "").strip().strip('"').lower()
    codec = _codec(declared) if declared else "ascii"
    if codec:
        if codec not in _IN_PLACE_CODECS:
            data = bytes(data)  # codecs written in Python may want bytes' methods
        try:
            # str() decodes a memoryview in place: no copy of a large body before decoding.
            return str(data, codec), None
        except UnicodeError:
            pass
    label = declared or "us-ascii"
    try:
        return str(data, "utf-8"), f"charset {label!r} unreadable; decoded as utf-8"
    except UnicodeError:
        pass
    data = bytes(data)
    try:
        best = charset_normalizer.from_bytes(data).best()
    except Exception:  # detection is a heuristic; never let it take the parse down
        best = None
    if best is not None and best.encoding:
        return str(best), f"charset {label!r} unreadable; decoded as {best.encoding}"
    text = data.decode("utf-8", errors="replace")
    return text, f"charset {label!r} unreadable; decoded as utf-8 with replacement characters"


def first_message_id(value: str) -> str:
    """The first message id in a header value, without angle brackets ("" if none)."""
    ids = message_ids(value)
    return ids[0] if ids else ""


def message_ids(value: str) -> tuple[str, ...]:
    """Every message id in a header value, in order, without angle brackets.

    Ids written without brackets (some clients do) are split on whitespace instead.
    """
    found = _MSGID.findall(value)
    if not found:
        found = [part.strip("<>,;") for part in value.split()]
    return tuple(dict.fromkeys(i for i in found if i))


def safe_filename(name: str, content_type: str = "application/octet-stream") -> str:
    """A file name that is safe to show and to save: no path, no control characters."""
    name = unicodedata.normalize("NFC", fix_surrogates(name))
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_NAME.sub("_", name).strip().lstrip(".").strip()
    if len(name) > MAX_FILENAME:
        stem, dot, ext = name.rpartition(".")
        if dot and 0 < len(ext) <= 16:
            name = stem[: MAX_FILENAME - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_FILENAME]
    if not name:
        ext = mimetypes.guess_extension(content_type, strict=False) or ".bin"
        name = "attachment" + ext
    return name


def _codec(label: str) -> str | None:
    """The Python codec for a MIME charset label, or None if it is unknown or not a text
    codec (``base64``, ``rot13`` and friends are codecs too, but not charsets)."""
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def fix_surrogates(value: str) -> str:
    """Headers with raw 8-bit bytes come back with surrogate escapes: decode those bytes."""
    if not _SURROGATES.search(value):
        return value
    raw = value.encode("utf-8", errors="surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        text, _ = decode_text(raw, "windows-1252")
        return text


def decode_words(raw: str) -> str:
    """RFC 2047 decoding for a raw header value, falling back to the value as it is."""
    try:
        return str(make_header(decode_header(raw)))
    except Exception:
        return raw
