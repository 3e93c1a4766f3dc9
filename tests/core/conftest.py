"""Fixtures of the store and outbox tests: a settable clock and a store on it, once per
backend (SQLite in a temp file, PostgreSQL in a fresh database of the session's server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from casebridge.store.sqlite import SqliteStore
from support.postgres import PostgresServer, postgres_server
from support.stores import FakeClock

__all__ = ["postgres_server"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Any]:
    if request.param == "sqlite":
        async with SqliteStore(tmp_path / "casebridge.db", clock=clock) as s:
            yield s
        return
    from casebridge.pgstore import PgStore

    server: PostgresServer = request.getfixturevalue("postgres_server")
    async with PgStore(server.new_database(), clock=clock) as s:
        yield s
