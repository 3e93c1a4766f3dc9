"""A large message text written in pieces.

SQLite builds each row as one record: a 25 MiB text bound as a parameter is held twice
while it is inserted (the bound copy and the record, about +51 MiB, measured with plain
sqlite3), and so is ``zeroblob(n)`` in a column in the middle of the record (SQLite expands
it before building the record). Only a zeroblob that ends the record stays virtual. So a
text of at least :data:`LARGE_TEXT` characters goes to ``messages.large_text``, the row's
last column (schema version 5), inserted as ``zeroblob(n)`` (n: its UTF-8 length) and filled
through :meth:`sqlite3.Connection.blobopen` a piece at a time (about +3 MiB); the ``text``
column then holds ``''`` and :meth:`casebridge.store.rows.Rows.message` reads the text from
``large_text``. An ``original_text`` equal to that text is stored once, as
:data:`casebridge.store.rows.SAME_AS_TEXT`. Other columns are written as before (a large
``original_text`` that differs, or a large ``html``, still costs SQLite's two copies).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

from ..rows import LARGE_TEXT, SAME_AS_TEXT

__all__ = ["large_text_params", "write_large_text"]

# Characters encoded and written at a time.
_PIECE = 1 << 20


def _pieces(value: str) -> Iterator[bytes]:
    for at in range(0, len(value), _PIECE):
        yield value[at : at + _PIECE].encode("utf-8")


def _utf8_length(value: str) -> int:
    # An ASCII str's length is its UTF-8 length; otherwise count piece by piece, never
    # holding the whole encoding.
    return len(value) if value.isascii() else sum(map(len, _pieces(value)))


def large_text_params(row: dict[str, Any]) -> dict[str, Any] | None:
    """The parameters of the large-text insert of a ``messages`` row (``large_text``: the
    text's UTF-8 length), or None when its text is not large."""
    text = row["text"]
    if len(text) < LARGE_TEXT:
        return None
    params = dict(row, text="", large_text=_utf8_length(text))
    if row["original_text"] == text:
        params["original_text"] = SAME_AS_TEXT
    return params


def write_large_text(conn: sqlite3.Connection, rowid: int, text: str) -> None:
    """Fill the zeroblob ``large_text`` of the message row ``rowid`` with ``text``."""
    with conn.blobopen("messages", "large_text", rowid) as blob:
        for piece in _pieces(text):
            blob.write(piece)
