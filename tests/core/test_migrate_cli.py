"""``casebridge migrate`` applies the configured store's migrations: SQLite by default,
PostgreSQL when ``[store] url`` is set; a bad URL is refused without echoing it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from casebridge import cli
from casebridge.store.migrations import load_migrations
from support.postgres import PostgresServer


def _config(tmp_path: Path, store: str) -> Path:
    path = tmp_path / "casebridge.toml"
    path.write_text(f'[bridge]\ndata_dir = "var"\n\n[store]\n{store}\n', encoding="utf-8")
    return path


def test_migrate_sqlite_applies_every_migration(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path, 'path = "cb.db"')
    assert cli.main(["migrate", "-c", str(config)]) == 0
    with sqlite3.connect(tmp_path / "var" / "cb.db") as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version")]
    assert versions == [m.version for m in load_migrations()]
    assert f"schema version {len(versions)}" in capsys.readouterr().out


def test_migrate_postgres_applies_once(
    tmp_path: Path, postgres_server: PostgresServer, capsys
) -> None:
    # A database without the schema: created from template0, not the migrated template.
    postgres_server._admin('CREATE DATABASE "bare_migrate"')
    url = postgres_server.url("bare_migrate")
    config = _config(tmp_path, f'url = "{url}"')
    assert cli.main(["migrate", "-c", str(config)]) == 0
    assert cli.main(["migrate", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.count(f"schema version {len(load_migrations())}") == 2
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version FROM schema_version").fetchall()
    assert [r[0] for r in rows] == [m.version for m in load_migrations()]


def test_store_url_must_be_postgres_and_is_not_echoed(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path, 'url = "mysql://root:hunter2@db/x"')
    assert cli.main(["migrate", "-c", str(config)]) != 0
    err = capsys.readouterr().err
    assert "postgresql://" in err and "hunter2" not in err


@pytest.mark.parametrize("bad", ["postgresql://u:pw-xyz@127.0.0.1:1/none"])
def test_unreachable_postgres_error_hides_the_password(tmp_path: Path, bad: str, capsys) -> None:
    config = _config(tmp_path, f'url = "{bad}"')
    assert cli.main(["migrate", "-c", str(config)]) != 0
    err = capsys.readouterr().err
    assert "127.0.0.1" in err and "pw-xyz" not in err


def test_store_url_selects_postgres_and_path_sqlite(tmp_path: Path) -> None:
    from casebridge.config import load
    from casebridge.pgstore import PgStore
    from casebridge.store.sqlite import SqliteStore
    from casebridge.stores import open_store_for

    sqlite = open_store_for(load(_config(tmp_path, 'path = "x.db"')))
    assert isinstance(sqlite, SqliteStore) and sqlite.path == tmp_path / "var" / "x.db"
    pg = open_store_for(load(_config(tmp_path, 'url = "postgresql://u:pw@db.internal/cb"')))
    assert isinstance(pg, PgStore) and "pw" not in repr(pg)
    assert repr(pg) == "PgStore('postgresql://u@db.internal/cb')"
