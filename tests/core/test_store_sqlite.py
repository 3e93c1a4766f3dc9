"""What only the SQLite store does: a WAL file that records its schema version and migrates
once, shared by several processes (here, several stores) without duplicating contacts,
state updates or claims."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from casebridge.model import Contact
from casebridge.store import NewJob
from casebridge.store.migrations import load_migrations
from casebridge.store.sqlite import SqliteStore
from casebridge.store.sqlite.migrate import apply_migrations
from support.stores import T0, FakeClock, stored_contact

pytestmark = pytest.mark.anyio

LEASE = timedelta(seconds=30)


def job(key: str, **kw: object) -> NewJob:
    return NewJob(kind="work", payload={"key": key}, key=key, **kw)  # type: ignore[arg-type]


async def test_open_uses_wal_and_records_the_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "casebridge.db"
    async with SqliteStore(path) as store:
        assert await store.schema_version() == len(load_migrations())
        await store.ping()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = conn.execute("SELECT version, name FROM schema_version").fetchall()
    assert rows == [(m.version, m.name) for m in load_migrations()]


async def test_reopening_applies_nothing_and_keeps_data(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "casebridge.db"
    async with SqliteStore(path, clock=clock) as store:
        await stored_contact(store)
    with sqlite3.connect(path) as conn:
        assert apply_migrations(conn, load_migrations(), T0) == []
    async with SqliteStore(path, clock=clock) as store:
        assert (await store.get_contact("c1")) is not None
    with sqlite3.connect(path) as conn:
        count = conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0]
    assert count == len(load_migrations())


async def test_create_contact_races_between_processes_yield_one_contact(
    tmp_path: Path,
) -> None:
    path = tmp_path / "casebridge.db"
    async with SqliteStore(path) as one, SqliteStore(path) as two:
        results: list[Contact] = []

        async def create(store: SqliteStore, n: int) -> None:
            contact = Contact(id=f"c{n}", emails=("same@example.com",), phones=(f"+1555000{n:04}",))
            results.append(await store.create_contact(contact))

        async with anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(create, one if n % 2 else two, n)
        assert len({c.id for c in results}) == 1
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT COUNT(*) FROM contacts").fetchone()[0] == 1


async def test_compare_and_put_counts_exactly_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "casebridge.db"
    async with SqliteStore(path) as one, SqliteStore(path) as two:

        async def bump(store: SqliteStore) -> None:
            for _ in range(10):
                while True:
                    current = await store.get_state("p", "counter")
                    new = (current or 0) + 1
                    if await store.compare_and_put_state("p", "counter", current, new):
                        break

        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(bump, one if n % 2 else two)
        assert await one.get_state("p", "counter") == 40


async def test_two_stores_on_one_file_never_claim_the_same_job(tmp_path: Path) -> None:
    path = tmp_path / "casebridge.db"
    total = 150
    claimed: list[tuple[str, int]] = []
    async with SqliteStore(path) as one, SqliteStore(path) as two:
        await one.enqueue([job(f"j{n}") for n in range(total)])
        await one.enqueue([job(f"o{n}", order_key="shared") for n in range(20)])

        first_claims = {"one": anyio.Event(), "two": anyio.Event()}

        async def worker(store: SqliteStore, name: str) -> None:
            while (got := await store.claim_job(name, LEASE)) is not None:
                claimed.append((name, got.id))
                # Hold the first job until both stores have claimed, so both really compete.
                first_claims[name.split("/")[0]].set()
                for event in first_claims.values():
                    await event.wait()
                # A checkpoint between claim and completion lets the other store interleave.
                await anyio.lowlevel.checkpoint()
                assert await store.complete_job(got.id, attempt=got.attempts)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for n in range(3):
                    tg.start_soon(worker, one, f"one/{n}")
                    tg.start_soon(worker, two, f"two/{n}")

    ids = [job_id for _, job_id in claimed]
    assert len(ids) == len(set(ids)) == total + 20
    assert {name.split("/")[0] for name, _ in claimed} == {"one", "two"}
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT state, attempts, COUNT(*) FROM jobs GROUP BY 1, 2").fetchall()
    assert rows == [("done", 1, total + 20)]
