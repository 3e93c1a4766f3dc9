"""PostgreSQL migrations: ``casebridge/migrations/postgres/NNNN_name.sql``, applied in order
under an advisory lock (several runners starting at once migrate once) and recorded in
``schema_version`` as on SQLite."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

__all__ = ["PgMigration", "apply_migrations", "apply_migrations_sync", "load_migrations"]

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any fixed number: all casebridge runners on one database agree on it.
_MIGRATION_LOCK = 0x63617365  # "case"

_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)


@dataclass(frozen=True, slots=True)
class PgMigration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[PgMigration]:
    """The packaged PostgreSQL migrations in version order; RuntimeError on a bad set."""
    folder = resources.files("casebridge").joinpath("migrations").joinpath("postgres")
    found: dict[int, PgMigration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise RuntimeError(f"migration file postgres/{entry.name!r} is not NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(f"two PostgreSQL migrations have version {version}")
        found[version] = PgMigration(version, match.group(2), entry.read_text("utf-8"))
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"PostgreSQL migration versions must run 1, 2, 3...: {versions}")
    return [found[v] for v in versions]


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
        for migration in load_migrations():
            if migration.version in done:
                continue
            await conn.execute(migration.sql.encode())
            await conn.execute(
                "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                (migration.version, migration.name),
            )
            applied.append(migration.version)
    return applied


def apply_migrations_sync(url: str) -> list[int]:
    """:func:`apply_migrations` for a URL, without an event loop (test templates)."""
    applied: list[int] = []
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(_VERSION_TABLE)
        done = {row[0] for row in conn.execute("SELECT version FROM schema_version")}
        for migration in load_migrations():
            if migration.version not in done:
                conn.execute(migration.sql.encode())
                conn.execute("INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                             (migration.version, migration.name))
                applied.append(migration.version)
    return applied
