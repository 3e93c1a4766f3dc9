"""Applies the store's migrations (:mod:`casebridge.store.migrations`) to PostgreSQL: in
order, under an advisory lock (several runners starting at once migrate once), recorded in
``schema_version`` as on SQLite."""

from __future__ import annotations

import psycopg

from ..store.migrations import Migration, load_migrations

__all__ = ["Migration", "apply_migrations", "apply_migrations_sync", "load_migrations"]

# Any fixed number: all casebridge runners on one database agree on it.
_MIGRATION_LOCK = 0x63617365  # "case"

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)
_RECORD = "INSERT INTO schema_version (version, name) VALUES (%s, %s)"


def _scripts(done: set[int]) -> list[tuple[Migration, bytes]]:
    # Bytes: psycopg then sends the script as it is, without looking for placeholders.
    return [(m, m.script("postgres").encode()) for m in load_migrations()
            if m.version not in done]


async def apply_migrations(conn: psycopg.AsyncConnection) -> list[int]:  # type: ignore[type-arg]
    """Apply what the database lacks, in one transaction; return the versions applied."""
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute(_VERSION_TABLE)
        cur = await conn.execute("SELECT version FROM schema_version")
        found = await cur.fetchall()
        # Rows are tuples or dicts, depending on the connection's row factory.
        done = {row[0] if isinstance(row, tuple) else row["version"] for row in found}
        for migration, script in _scripts(done):
            if script:
                await conn.execute(script)
            await conn.execute(_RECORD, (migration.version, migration.name))
            applied.append(migration.version)
    return applied


def apply_migrations_sync(url: str) -> list[int]:
    """:func:`apply_migrations` for a URL, without an event loop (test templates)."""
    applied: list[int] = []
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(_VERSION_TABLE)
        done = {row[0] for row in conn.execute("SELECT version FROM schema_version")}
        for migration, script in _scripts(done):
            if script:
                conn.execute(script)
            conn.execute(_RECORD, (migration.version, migration.name))
            applied.append(migration.version)
    return applied
