"""Where the sandbox keeps its rows: in memory, optionally written through to a SQLite file
so data survives a restart.

Rows are dicts in their JSON form, keyed by entity and lower-case Id. Every change goes to an
undo journal, so a failed ``$batch`` atomicity group can be rolled back with
:meth:`Store.rollback_to`. File contents live beside the rows, keyed by the file row's Id.

Text and GUID columns a filter compares for equality get an index on first use (value folded
as the filter compares it, to row Ids), kept up to date by every write, so ``Email eq '...'``
or ``ContactId eq ...`` reads the matching rows instead of scanning the table.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Set
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
        # (entity, column) -> folded value -> Ids of the rows holding it; built on first use.
        self._indexes: dict[tuple[str, str], dict[str, set[str]]] = {}
        # Each row's place in its table's insertion order, so index hits come back in the
        # order a scan would have found them.
        self._places: dict[str, dict[str, int]] = {name: {} for name in ENTITIES}
        self._next_place = 0
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
                self._place(entity, row_id)
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

    def ids_where(self, entity: str, column: str, value: str) -> Set[str]:
        """Ids of the rows whose ``column`` holds a string equal to ``value`` as filters
        compare text (case-folded)."""
        index = self._indexes.get((entity, column))
        if index is None:
            index = self._indexes[(entity, column)] = {}
            for key, row in self.tables[entity].items():
                _index_add(index, row.get(column), key)
        return index.get(value.casefold(), _NO_IDS)

    def rows_by_ids(self, entity: str, ids: Set[str]) -> list[dict[str, Any]]:
        """The rows with these Ids, in table order (as :meth:`rows` lists them)."""
        table, places = self.tables[entity], self._places[entity]
        return [table[key] for key in sorted(ids, key=places.__getitem__)]

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
        self._indexes.clear()
        for places in self._places.values():
            places.clear()
        if self._db is not None:
            self._db.executescript("DELETE FROM rows; DELETE FROM blobs; DELETE FROM counters;")

    # --- persistence ---

    def _write_row(self, entity: str, key: str, row: dict[str, Any]) -> None:
        table = self.tables[entity]
        old = table.get(key)
        is_new = old is None
        self._reindex(entity, key, old, row)
        table[key] = row
        if is_new:
            self._place(entity, key)
        if self._db is not None:
            if is_new:
                self._seq += 1
                self._sql("INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?)", entity, key,
                          self._seq, json.dumps(row))
            else:
                self._sql("UPDATE rows SET data = ? WHERE entity = ? AND id = ?",
                          json.dumps(row), entity, key)

    def _drop_row(self, entity: str, key: str) -> None:
        old = self.tables[entity].pop(key, None)
        self._places[entity].pop(key, None)
        self._reindex(entity, key, old, None)
        self._sql("DELETE FROM rows WHERE entity = ? AND id = ?", entity, key)

    def _write_blob(self, key: str, data: bytes) -> None:
        self.blobs[key] = data
        self._sql("INSERT OR REPLACE INTO blobs VALUES (?, ?)", key, data)

    def _place(self, entity: str, key: str) -> None:
        self._places[entity][key] = self._next_place
        self._next_place += 1

    def _reindex(self, entity: str, key: str, old: dict[str, Any] | None,
                 new: dict[str, Any] | None) -> None:
        for (indexed, column), index in self._indexes.items():
            if indexed != entity:
                continue
            before = old.get(column) if old is not None else None
            after = new.get(column) if new is not None else None
            if before != after or old is None or new is None:
                _index_remove(index, before, key)
                _index_add(index, after, key)

    def _sql(self, statement: str, *args: Any) -> None:
        if self._db is not None:
            self._db.execute(statement, args)


_NO_IDS: frozenset[str] = frozenset()


def _index_add(index: dict[str, set[str]], value: Any, key: str) -> None:
    # Only strings are indexed: a text or GUID literal can only ever equal a string.
    if isinstance(value, str):
        index.setdefault(value.casefold(), set()).add(key)


def _index_remove(index: dict[str, set[str]], value: Any, key: str) -> None:
    if isinstance(value, str):
        ids = index.get(value.casefold())
        if ids is not None:
            ids.discard(key)
            if not ids:
                del index[value.casefold()]
