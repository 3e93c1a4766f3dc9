"""The SQLite store's job heads: claims are index probes, and migration 0002 fills the heads
of a database written by version 1."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

from casebridge.store import NewJob
from casebridge.store.sqlite import SqliteStore, heads
from casebridge.store.sqlite.heads import _REFRESH, _take_sql
from casebridge.store.sqlite.migrate import apply_migrations, load_migrations
from support.stores import T0, FakeClock

LEASE = timedelta(seconds=30)


def _plan(conn: sqlite3.Connection, sql: str, params: object) -> str:
    return " | ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))


async def test_claim_queries_probe_partial_indexes(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "casebridge.db"
    async with SqliteStore(path, clock=clock) as store:
        await store.enqueue([NewJob("k", {}, key=f"j{i}", order_key=f"o{i % 7}")
                             for i in range(50)])
    now = "2026-03-01T09:00:00.000000+00:00"
    claim = {"now": now, "worker": "w", "lease_until": now}
    with sqlite3.connect(path) as conn:
        two_kinds = {**claim, "k0": "k", "k1": "x"}
        keyed = {**two_kinds, "key": "o1"}
        for sql, params in ((_take_sql(None), claim), (_take_sql(2), two_kinds),
                            (_take_sql(2, True), keyed), (_REFRESH, {"key": "o1"})):
            plan = _plan(conn, sql, params)
            assert "SEARCH jobs USING" in plan and "INDEX jobs_" in plan, plan
            assert "SCAN jobs" not in plan, plan
        # Each kind's probe, and the expired leases', is its own seek.
        plan = _plan(conn, _take_sql(2), two_kinds)
        assert plan.count("jobs_head_due_kind") == 2 and "jobs_running_lease" in plan, plan
        assert "jobs_by_order" in _plan(conn, _take_sql(2, True), keyed)


def _v1_database(path: Path) -> None:
    """A version-1 database holding jobs in every state, as the old code left them."""
    v1 = [m for m in load_migrations() if m.version == 1]
    with sqlite3.connect(path, isolation_level=None) as conn:
        apply_migrations(conn, v1, T0)
        stamp = T0.isoformat(timespec="microseconds")
        rows = [
            # order key a: 1 is done, 2 dead, 3 running (lease live), 4 pending behind it.
            (1, "a", "done", None), (2, "a", "dead", None), (3, "a", "running", "9999"),
            (4, "a", "pending", None),
            # order key b: two pending, 5 first.
            (5, "b", "pending", None), (6, "b", "pending", None),
            # no order key: always runnable.
            (7, "", "pending", None),
        ]
        for job_id, order_key, state, lease in rows:
            conn.execute(
                "INSERT INTO jobs (id, kind, key, order_key, payload, state, run_at,"
                " lease_until, created_at, updated_at) VALUES (?, 'k', ?, ?, '{}', ?, ?, ?, ?, ?)",
                (job_id, f"j{job_id}", order_key, state, stamp,
                 None if lease is None else f"{lease}-12-31T00:00:00.000000+00:00", stamp, stamp),
            )


async def test_migration_fills_heads_of_an_existing_database(
    tmp_path: Path, clock: FakeClock
) -> None:
    path = tmp_path / "old.db"
    _v1_database(path)
    async with SqliteStore(path, clock=clock) as store:
        with sqlite3.connect(path) as conn:
            heads = [r[0] for r in conn.execute("SELECT id FROM jobs WHERE is_head = 1"
                                               " AND state IN ('pending', 'running') ORDER BY id")]
        assert heads == [3, 5, 7]
        claimed = [await store.claim_job("w", LEASE) for _ in range(3)]
        assert [j.id for j in claimed if j is not None] == [5, 7]
        assert claimed[2] is None
        # Finishing b's head makes 6 the next; a waits for its running job 3.
        assert await store.complete_job(5)
        job = await store.claim_job("w", LEASE)
        assert job is not None and job.id == 6
        assert await store.complete_job(3)
        job = await store.claim_job("w", LEASE)
        assert job is not None and job.id == 4


async def test_replayed_job_waits_for_the_running_one_then_goes_first(
    store: SqliteStore, clock: FakeClock
) -> None:
    await store.enqueue([NewJob("k", {}, key=f"j{i}", order_key="s") for i in range(4)])
    first = await store.claim_job("w", LEASE)
    assert first is not None and await store.kill_job(first.id, "boom")
    second = await store.claim_job("w", LEASE)
    assert second is not None and second.key == "j1"
    assert await store.replay_dead([first.id]) == 1
    assert await store.claim_job("w", LEASE) is None  # j1 still runs: nothing else of "s"
    assert await store.next_run_at(["k"]) == second.lease_until
    assert await store.complete_job(second.id, attempt=second.attempts)
    again = await store.claim_job("w", LEASE)
    assert again is not None and again.key == "j0"  # the replayed one comes before j2


async def test_head_upkeep_queries_use_the_order_index(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "casebridge.db"
    async with SqliteStore(path, clock=clock):
        pass
    with sqlite3.connect(path) as conn:
        exists = f"SELECT {heads.head_flag_sql}"
        for sql, params in (
            (exists, {"order_key": "s"}),
            ("SELECT id FROM jobs WHERE order_key = ? AND order_key <> '' AND state = ?"
             " ORDER BY id LIMIT 1", ("s", "pending")),
        ):
            plan = _plan(conn, sql, params)
            assert "jobs_by_order" in plan and "SCAN jobs" not in plan, plan
