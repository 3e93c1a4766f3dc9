"""Message texts of at least LARGE_TEXT characters on every backend: they read back as
written (SQLite writes them in pieces to the row's last column, and an original_text equal
to the text once); ordinary rows are untouched."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from casebridge.store import Store
from casebridge.store.rows import LARGE_TEXT
from casebridge.store.sqlite import SqliteStore
from support.stores import FakeClock, job_for, make_message, stored_contact, stored_session

pytestmark = pytest.mark.anyio

# Over LARGE_TEXT characters, with multi-byte characters across the write pieces.
LOG = "Drucker meldet Fehler \u00e9\u20ac\U0001f5a8 in Zeile 42\n" * (LARGE_TEXT // 30)


async def test_a_large_text_reads_back_as_written(store: Store) -> None:
    contact = await stored_contact(store)
    session = await stored_session(store, contact)
    same = make_message(1, text=LOG, original_text=LOG, session_id=session.id)
    other = make_message(2, text=LOG[:100], original_text=LOG + "> quote",
                         html="<p>" + LOG + "</p>", session_id=session.id)
    assert await store.accept_inbound(same, job_for(1))
    assert await store.add_message(other)
    assert not await store.accept_inbound(same, job_for(1))  # once, large or not
    assert await store.get_message("msg-1") == same
    assert await store.get_message("msg-2") == other
    assert await store.transcript(session.id) == [same, other]


async def test_an_empty_original_text_stays_empty(store: Store) -> None:
    """Only a large text's equal original is stored once: an empty original_text is not
    read as "the same as the text"."""
    small = make_message(3, text="Printer broken.", original_text="")
    large = make_message(4, text=LOG, original_text="")
    assert await store.add_message(small)
    assert await store.add_message(large)
    assert await store.get_message("msg-3") == small
    assert await store.get_message("msg-4") == large


async def test_sqlite_writes_a_large_text_last_in_the_row_and_an_equal_original_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "casebridge.db"
    async with SqliteStore(path, clock=FakeClock()) as store:
        assert await store.add_message(make_message(1, text=LOG, original_text=LOG))
        assert await store.add_message(make_message(2, text="short", original_text="short"))
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT id, text, typeof(original_text), length(original_text), typeof(large_text),"
            " length(large_text) FROM messages ORDER BY id").fetchall()
        last = conn.execute("SELECT name FROM pragma_table_info('messages') ORDER BY cid DESC"
                            " LIMIT 1").fetchone()[0]
    assert last == "large_text"
    assert rows == [("msg-1", "", "blob", 0, "blob", len(LOG.encode())),
                    ("msg-2", "short", "text", 5, "null", None)]
