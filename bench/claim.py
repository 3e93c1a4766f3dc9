"""Outbox claim cost against the backlog: one claim and completion of a job with 0, 10,000
and 100,000 other jobs pending, on the SQLite store as the bridge opens it and (when a
PostgreSQL URL is given or its binaries are installed) on the PostgreSQL store.

The backlog is what a burst leaves: inbound jobs, each behind its own order key (one per
sender), due now. Each row claims and completes ``--claims`` jobs one at a time and reports
the time per claim and its multiple of the empty-backlog row (baseline, same run). The
"before" rows run the claim SQL this store used until migration 0002 (an OR over due and
expired jobs with a NOT EXISTS ordering subquery) on the same database: it scans the backlog,
so it only runs at the smaller ``--before-sizes``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from casebridge.store import Job, NewJob
from casebridge.store.sqlite import SqliteStore
from common import report  # puts core/ and tests/ on sys.path

LEASE = timedelta(seconds=60)

# The claim before migration 0002, kept here as the baseline.
OLD_CLAIM = """
UPDATE jobs SET state = 'running', attempts = attempts + 1, worker_id = :worker,
    lease_until = :lease_until, updated_at = :now,
    last_error = CASE WHEN state = 'running'
        THEN 'lease expired: worker ' || worker_id || ' did not finish attempt ' || attempts
        ELSE last_error END
WHERE id = (
    SELECT j.id FROM jobs AS j
    WHERE ((j.state = 'pending' AND j.run_at <= :now)
           OR (j.state = 'running' AND j.lease_until <= :now))
      AND (j.order_key = '' OR NOT EXISTS (
          SELECT 1 FROM jobs AS o
          WHERE o.order_key = j.order_key AND o.id <> j.id
            AND ((o.id < j.id AND o.state IN ('pending', 'running'))
                 OR (o.state = 'running' AND o.lease_until > :now))))
    ORDER BY j.run_at, j.id
    LIMIT 1)
RETURNING id, attempts
"""


def backlog(n: int, start: int = 0) -> list[NewJob]:
    return [NewJob(kind="inbound", payload={"message_id": f"m{i}"}, key=f"inbound:m{i}",
                   order_key=f"from:email:customer{i}@example.com")
            for i in range(start, start + n)]


async def old_claim(store: SqliteStore) -> tuple[int, int] | None:
    def run(conn: Any) -> tuple[int, int] | None:
        now = store.db.now()
        row = conn.execute(OLD_CLAIM, {"worker": "bench", "now": now.isoformat(
            timespec="microseconds"), "lease_until": (now + LEASE).isoformat(
            timespec="microseconds")}).fetchone()
        return None if row is None else (row[0], row[1])
    return await store.db.tx(run)


async def new_claim(store: Any) -> tuple[int, int] | None:
    job: Job | None = await store.claim_job("bench", LEASE, ["inbound"])
    return None if job is None else (job.id, job.attempts)


async def claim_cost(store: Any, pending: int, claims: int,
                     claim: Callable[[Any], Awaitable[tuple[int, int] | None]]) -> float:
    """Seconds per claim + completion with ``pending`` jobs waiting besides those claimed."""
    warmup = min(claims, 10)
    total = pending + claims + warmup
    for offset in range(0, total, 5000):
        await store.enqueue(backlog(min(5000, total - offset), offset))
    # Untimed first claims: connections, caches and prepared statements warm in every row.
    for _ in range(warmup):
        taken = await claim(store)
        assert taken is not None
        await store.complete_job(taken[0], attempt=taken[1])
    started = time.perf_counter()
    for _ in range(claims):
        taken = await claim(store)
        assert taken is not None
        await store.complete_job(taken[0], attempt=taken[1])
    return (time.perf_counter() - started) / claims


@asynccontextmanager
async def sqlite_store(folder: Path, name: str) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(folder / f"{name}.db") as store:
        yield store


@asynccontextmanager
async def postgres_store(url: str | None, name: str) -> AsyncIterator[Any]:
    from casebridge.pgstore import PgStore
    from support.postgres import PostgresServer

    if url is not None:
        async with PgStore(url) as store:
            await store.truncate_jobs()
            yield store
        return
    with PostgresServer.running() as server:
        async with PgStore(server.new_database(name)) as store:
            yield store


async def measure(args: argparse.Namespace) -> list[list[str]]:
    rows: list[list[str]] = []

    def add(label: str, costs: dict[int, float]) -> None:
        base = next(iter(costs.values()))
        rows.extend([label, f"{n:,}", f"{c * 1e6:,.0f}", f"{1 / c:,.0f}", f"{c / base:.2f}x"]
                    for n, c in costs.items())

    with tempfile.TemporaryDirectory() as tmp:
        before = {}
        for n in args.before_sizes:
            async with sqlite_store(Path(tmp), f"old-{n}") as store:
                before[n] = await claim_cost(store, n, args.before_claims, old_claim)
        add("SQLite, before (old claim SQL)", before)
        after = {}
        for n in args.sizes:
            async with sqlite_store(Path(tmp), f"new-{n}") as store:
                after[n] = await claim_cost(store, n, args.claims, new_claim)
        add("SQLite, job heads", after)
    if args.postgres != "off":
        pg = {}
        for n in args.sizes:
            url = None if args.postgres == "auto" else args.postgres
            async with postgres_store(url, f"claims_{n}") as store:
                pg[n] = await claim_cost(store, n, args.claims, new_claim)
        add("PostgreSQL, job heads", pg)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=200, help="claims per row")
    parser.add_argument("--sizes", default="0,10000,100000", help="backlog sizes")
    parser.add_argument("--before-claims", type=int, default=5, help="claims per 'before' row")
    parser.add_argument("--before-sizes", default="0,1000,3000", help="backlog sizes, old SQL")
    parser.add_argument("--postgres", default="auto",
                        help="a postgresql:// URL (its jobs are emptied!), 'auto' to start a"
                             " throw-away server from the installed binaries, or 'off'")
    parser.add_argument("--quick", action="store_true", help="a tiny run (the smoke test)")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.before_sizes = [int(s) for s in args.before_sizes.split(",")]
    if args.quick:
        args.sizes, args.before_sizes, args.claims, args.before_claims = [0, 500], [0, 500], 20, 5
    rows = asyncio.run(measure(args))
    report("Outbox claim cost against the backlog",
           [f"{args.claims} claims + completions per row ({args.before_claims} for the old SQL);"
            " 'vs empty' is against the same store's 0-pending row."],
           ["store", "pending", "µs per claim", "claims/s", "vs empty"], rows)


if __name__ == "__main__":
    main()
