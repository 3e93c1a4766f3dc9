"""One list of migrations for both backends: each dialect's SQL, the SQLite and PostgreSQL
runners, and databases made by the SQL files of earlier releases (kept in
``legacy_schema/``) opening with the same schema a new database gets."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from casebridge.store.migrations import MIGRATIONS, Migration, load_migrations
from casebridge.store.sqlite import SqliteStore
from casebridge.store.sqlite.migrate import apply_migrations
from support.postgres import PostgresServer
from support.stores import T0, FakeClock, stored_contact

pytestmark = pytest.mark.anyio

LEGACY = Path(__file__).parent / "legacy_schema"


# -- the list and its dialects ------------------------------------------------------------


def test_migrations_are_numbered_from_one() -> None:
    assert [m.version for m in load_migrations()] == list(range(1, len(MIGRATIONS) + 1))


def test_each_dialect_gets_its_own_words() -> None:
    initial = load_migrations()[0]
    sqlite, postgres = initial.script("sqlite"), initial.script("postgres")
    assert "seq            INTEGER PRIMARY KEY AUTOINCREMENT," in sqlite
    assert "created_at  TEXT NOT NULL" in sqlite and "TIMESTAMPTZ" not in sqlite
    assert "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY" in postgres
    assert "created_at  TIMESTAMPTZ NOT NULL" in postgres and "AUTOINCREMENT" not in postgres
    for migration in load_migrations():
        for dialect in ("sqlite", "postgres"):
            assert "{" not in migration.script(dialect)  # type: ignore[arg-type]
    # PostgreSQL got the job heads in its first version; version 2 is SQLite's alone.
    heads = load_migrations()[1]
    assert "is_head" in heads.script("sqlite") and heads.script("postgres") == ""


def test_a_bad_placeholder_or_dialect_is_named() -> None:
    with pytest.raises(RuntimeError, match=r"migration 7 \(typo\).*tiem"):
        Migration(7, "typo", "CREATE TABLE t (at {tiem});").script("sqlite")
    with pytest.raises(ValueError, match="mysql"):
        load_migrations()[0].script("mysql")  # type: ignore[arg-type]


# -- the SQLite runner --------------------------------------------------------------------


def test_a_new_migration_is_applied_once(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    first = Migration(1, "one", "CREATE TABLE a (x {time});\n-- done\n")
    second = Migration(2, "two", "CREATE TABLE b (y TEXT);\nINSERT INTO b VALUES ('z');",
                       postgres="SELECT no_such_function();")
    assert apply_migrations(conn, [first], T0) == [1]
    assert apply_migrations(conn, [first, second], T0) == [2]
    assert apply_migrations(conn, [first, second], T0) == []
    assert conn.execute("SELECT y FROM b").fetchall() == [("z",)]
    declared = conn.execute("SELECT type FROM pragma_table_info('a')").fetchone()[0]
    assert declared == "TEXT"


def test_a_failing_migration_leaves_no_trace(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    broken = Migration(1, "broken", "CREATE TABLE a (x INTEGER);\nINSERT INTO nowhere VALUES (1);")
    with pytest.raises(sqlite3.OperationalError, match="nowhere"):
        apply_migrations(conn, [broken], T0)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "a" not in tables
    assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 0


# -- databases of earlier releases --------------------------------------------------------


def _legacy(dialect: str) -> list[Migration]:
    """The migrations as the SQL files of earlier releases had them (the same versions)."""
    found = []
    for path in sorted((LEGACY / dialect).glob("*.sql")):
        version, name = path.stem.split("_", 1)
        text = path.read_text(encoding="utf-8")
        found.append(Migration(int(version), name, **{dialect: text}))
    return found


def _sqlite_schema(path: Path) -> list[tuple[str, str, str]]:
    """Every table and index with its SQL, comments and spacing aside."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
            " ORDER BY type, name").fetchall()
    return [(kind, name, " ".join(re.sub(r"--[^\n]*", "", sql or "").split()))
            for kind, name, sql in rows]


async def test_an_sqlite_database_of_an_earlier_release_opens_as_a_new_one(
    tmp_path: Path, clock: FakeClock
) -> None:
    old = tmp_path / "old.db"
    with sqlite3.connect(old, isolation_level=None) as conn:
        assert apply_migrations(conn, _legacy("sqlite"), T0) == [1, 2]
        conn.execute("INSERT INTO crm_events VALUES ('creatio', 'e1', 'x')")
    async with SqliteStore(old, clock=clock) as store:
        await stored_contact(store)
        assert await store.schema_version() == len(MIGRATIONS)
    async with SqliteStore(tmp_path / "new.db", clock=clock):
        pass
    assert _sqlite_schema(old) == _sqlite_schema(tmp_path / "new.db")
    assert "crm_events" not in {name for _, name, _ in _sqlite_schema(old)}
    with sqlite3.connect(old) as conn:
        names = conn.execute("SELECT version, name FROM schema_version ORDER BY 1").fetchall()
    assert names == [(m.version, m.name) for m in MIGRATIONS]


def _postgres_schema(url: str) -> dict[str, list[tuple[object, ...]]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return {
            "columns": conn.execute(
                "SELECT table_name, ordinal_position, column_name, data_type, is_nullable,"
                " column_default, is_identity FROM information_schema.columns"
                " WHERE table_schema = 'public' ORDER BY 1, 2").fetchall(),
            "indexes": conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
                " ORDER BY 1").fetchall(),
            "constraints": conn.execute(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
                " FROM pg_constraint WHERE connamespace = 'public'::regnamespace"
                " ORDER BY 1, 2").fetchall(),
        }


async def test_a_postgres_database_of_an_earlier_release_opens_as_a_new_one(
    postgres_server: PostgresServer, clock: FakeClock
) -> None:
    import psycopg
    from casebridge.pgstore import PgStore

    postgres_server._admin('CREATE DATABASE "legacy_pg"')
    old = postgres_server.url("legacy_pg")
    with psycopg.connect(old, autocommit=True) as conn:
        # What the PostgreSQL runner of the earlier release did with its one file.
        conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
                     " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        for migration in _legacy("postgres"):
            conn.execute(migration.postgres.encode())
            conn.execute("INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                         (migration.version, migration.name))
    async with PgStore(old, clock=clock) as store:
        await stored_contact(store)
        assert await store.schema_version() == len(MIGRATIONS)
    fresh = postgres_server.new_database("fresh_pg")
    old_schema, new_schema = _postgres_schema(old), _postgres_schema(fresh)
    assert old_schema == new_schema
    assert not any(table == "crm_events" for table, *_ in old_schema["columns"])
    with psycopg.connect(old) as conn:
        names = conn.execute("SELECT version, name FROM schema_version ORDER BY 1").fetchall()
    assert names == [(m.version, m.name) for m in MIGRATIONS]
