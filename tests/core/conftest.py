"""Fixtures of the store and outbox tests: a settable clock and a SQLite store on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from casebridge.sqlite_store import SqliteStore
from support.stores import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "casebridge.db", clock=clock) as s:
        yield s
