"""Where the sandbox keeps its rows: in memory, optionally written through to a SQLite file
so data survives a restart.

Rows are dicts in their JSON form, keyed by entity and lower-case Id. Every change goes to an
undo journal, so a failed ``$batch`` atomicity group can be rolled back with
:meth:`Store.rollback_to`. File contents live beside the rows, keyed by the file row's Id.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from .schema import ENTITIES

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (entity TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,
                                 data TEXT NOT NULL, PRIMARY KEY (entity, id));
CREATE TABLE IF NOT EXISTS blobs (id TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class Store:
    """Rows by entity, in insertion order. Not thread-safe: the app calls it from one loop."""

    def __init__(self, database: Path | None = None) -> None:
        self.tables: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in ENTITIES}
        self.blobs: dict[str, bytes] = {}
        self.counters: dict[str, int] = {}
        self._journal: list[tuple[str, str, str, Any]] = []
        self._seq = 0
        self._db: sqlite3.Connection | None = None
        if database is not None:
            self._db = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            self._load()

    def _load(self) -> None:
        assert self._db is not None
        for entity, row_id, seq, data in self._db.execute(
            "SELECT entity, id, seq, data FROM rows ORDER BY seq"
        ):
            if entity in self.tables:
                self.tables[entity][row_id] = json.loads(data)
            self._seq = max(self._seq, seq)
        self.blobs = {row_id: bytes(data)
                      for row_id, data in self._db.execute("SELECT id, data FROM blobs")}
        self.counters = dict(self._db.execute("SELECT name, value FROM counters"))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def is_empty(self) -> bool:
        return not any(self.tables.values())

    # --- reading ---

    def get(self, entity: str, row_id: str) -> dict[str, Any] | None:
        return self.tables[entity].get(row_id.lower())

    def rows(self, entity: str) -> list[dict[str, Any]]:
        return list(self.tables[entity].values())

    def blob(self, row_id: str) -> bytes | None:
        return self.blobs.get(row_id.lower())

    # --- writing (journaled) ---

    def mark(self) -> int:
        """A point in the journal to roll back to."""
        return len(self._journal)

    def rollback_to(self, mark: int) -> None:
        """Undo every change made since ``mark``, newest first."""
        while len(self._journal) > mark:
            kind, entity, key, old = self._journal.pop()
            if kind == "row":
                if old is None:
                    self._drop_row(entity, key)
                else:
                    self._write_row(entity, key, old)
            elif kind == "blob":
                if old is None:
                    self.blobs.pop(key, None)
                    self._sql("DELETE FROM blobs WHERE id = ?", key)
                else:
                    self._write_blob(key, old)
            else:
                self.counters[key] = old
                self._sql("INSERT OR REPLACE INTO counters VALUES (?, ?)", key, old)

    def forget_journal(self) -> None:
        """Drop undo entries once no rollback can need them."""
        self._journal.clear()

    def put(self, entity: str, row: dict[str, Any]) -> None:
        """Insert or replace a row (by its ``Id``)."""
        key = str(row["Id"]).lower()
        old = self.tables[entity].get(key)
        self._journal.append(("row", entity, key, None if old is None else dict(old)))
        self._write_row(entity, key, row)

    def delete(self, entity: str, row_id: str) -> None:
        key = row_id.lower()
        old = self.tables[entity].get(key)
        if old is None:
            return
        self._journal.append(("row", entity, key, dict(old)))
        self._drop_row(entity, key)
        if key in self.blobs:
            self.put_blob(key, None)

    def put_blob(self, row_id: str, data: bytes | None) -> None:
        key = row_id.lower()
        self._journal.append(("blob", "", key, self.blobs.get(key)))
        if data is None:
            self.blobs.pop(key, None)
            self._sql("DELETE FROM blobs WHERE id = ?", key)
        else:
            self._write_blob(key, data)

    def next_value(self, counter: str) -> int:
        """The next value of a named counter (Case numbers), starting at 1."""
        old = self.counters.get(counter, 0)
        self._journal.append(("counter", "", counter, old))
        self.counters[counter] = old + 1
        self._sql("INSERT OR REPLACE INTO counters VALUES (?, ?)", counter, old + 1)
        return old + 1

    def clear(self) -> None:
        for table in self.tables.values():
            table.clear()
        self.blobs.clear()
        self.counters.clear()
        self._journal.clear()
        if self._db is not None:
            self._db.executescript("DELETE FROM rows; DELETE FROM blobs; DELETE FROM counters;")

    # --- persistence ---

    def _write_row(self, entity: str, key: str, row: dict[str, Any]) -> None:
        table = self.tables[entity]
        is_new = key not in table
        table[key] = row
        if self._db is not None:
            if is_new:
                self._seq += 1
                self._sql("INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?)", entity, key,
                          self._seq, json.dumps(row))
            else:
                self._sql("UPDATE rows SET data = ? WHERE entity = ? AND id = ?",
                          json.dumps(row), entity, key)

    def _drop_row(self, entity: str, key: str) -> None:
        self.tables[entity].pop(key, None)
        self._sql("DELETE FROM rows WHERE entity = ? AND id = ?", entity, key)

    def _write_blob(self, key: str, data: bytes) -> None:
        self.blobs[key] = data
        self._sql("INSERT OR REPLACE INTO blobs VALUES (?, ?)", key, data)

    def _sql(self, statement: str, *args: Any) -> None:
        if self._db is not None:
            self._db.execute(statement, args)
