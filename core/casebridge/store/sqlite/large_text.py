"""Large text columns written in pieces.

SQLite keeps two copies of a bound text value while it inserts it (about +51 MiB for a
25 MiB column, measured with plain sqlite3). A column of at least :data:`LARGE_TEXT`
characters is therefore inserted as ``zeroblob(n)`` (n: its UTF-8 length) and filled through
:meth:`sqlite3.Connection.blobopen` a piece at a time (about +3 MiB). The value is then a
BLOB in its TEXT-affinity column; :meth:`casebridge.store.rows.Rows.message` decodes it.

An ``original_text`` equal to a large ``text`` is stored once: as the empty BLOB, which no
text ever is (:data:`casebridge.store.rows.SAME_AS_TEXT`).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from typing import Any

from ..rows import LARGE_TEXT, SAME_AS_TEXT

__all__ = ["insert_with_large_text"]

# The message columns that may hold a whole body.
_BODY_COLUMNS = ("text", "original_text", "html")
# Characters encoded and written at a time.
_PIECE = 1 << 20


def _pieces(value: str) -> Iterator[bytes]:
    for at in range(0, len(value), _PIECE):
        yield value[at : at + _PIECE].encode("utf-8")


def _utf8_length(value: str) -> int:
    # An ASCII str's length is its UTF-8 length; otherwise count piece by piece, never
    # holding the whole encoding.
    return len(value) if value.isascii() else sum(map(len, _pieces(value)))


def insert_with_large_text(
    conn: sqlite3.Connection, sql: str, table: str, row: dict[str, Any]
) -> int:
    """Run the ``INSERT`` ``sql`` (named parameters, one row, may do nothing on conflict)
    with ``row``, writing its large body columns in pieces; returns the rowcount."""
    large = [c for c in _BODY_COLUMNS if isinstance(row.get(c), str) and len(row[c]) >= LARGE_TEXT]
    if not large:
        return conn.execute(sql, row).rowcount
    params = dict(row)
    if "original_text" in large and row["original_text"] == row["text"]:
        params["original_text"] = SAME_AS_TEXT
        large.remove("original_text")
    for column in large:
        sql = re.sub(rf"(?<=[\s(,]):{column}\b", f"zeroblob(:{column})", sql, count=1)
        params[column] = _utf8_length(row[column])
    cursor = conn.execute(sql, params)
    if cursor.rowcount and large:
        rowid = cursor.lastrowid
        assert rowid is not None
        for column in large:
            with conn.blobopen(table, column, rowid) as blob:
                for piece in _pieces(row[column]):
                    blob.write(piece)
    return cursor.rowcount
