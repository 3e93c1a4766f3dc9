"""Applies the store's migrations (:mod:`casebridge.store.migrations`) to a SQLite file and
records each version in ``schema_version``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import datetime

from ..migrations import Migration, load_migrations
from ..rows import SQLITE

__all__ = ["Migration", "apply_migrations", "load_migrations"]

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
)


def _statements(script: str) -> Iterator[str]:
    """Split a script into complete statements (``executescript`` would commit early)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            buffer = ""
            if statement.strip(";").strip():
                yield statement
    if buffer.strip() and not all(
        not part.strip() or part.strip().startswith("--") for part in buffer.splitlines()
    ):
        raise RuntimeError(f"migration ends with an incomplete statement: {buffer.strip()!r}")


def apply_migrations(
    conn: sqlite3.Connection, migrations: Sequence[Migration], now: datetime
) -> list[int]:
    """Apply the migrations the database lacks, each in its own transaction, and return
    their versions. Safe against another process migrating at the same time: the version
    check happens under the write lock. ``conn`` must be in autocommit mode
    (``isolation_level=None``)."""
    conn.execute(_VERSION_TABLE)
    applied: list[int] = []
    for migration in migrations:
        statements = list(_statements(migration.script("sqlite")))
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = conn.execute(
                "SELECT 1 FROM schema_version WHERE version = ?", (migration.version,)
            ).fetchone()
            if done is None:
                for statement in statements:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, SQLITE.ts(now)),
                )
                applied.append(migration.version)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return applied
