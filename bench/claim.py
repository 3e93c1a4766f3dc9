"""Outbox claim cost against the backlog: one claim and completion of a job with 0, 10,000
and 100,000 other jobs pending, on the SQLite store as the bridge opens it.

The backlog is what a burst leaves: inbound jobs, each behind its own order key (one per
sender), due now. Each row claims and completes ``--claims`` jobs one at a time and reports
the time per claim and its multiple of the empty-backlog row (baseline, same run).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from casebridge.sqlite_store import SqliteStore
from casebridge.store import NewJob
from common import machine, table  # puts core/ on sys.path

LEASE = timedelta(seconds=60)


def backlog(n: int, start: int = 0) -> list[NewJob]:
    return [NewJob(kind="inbound", payload={"message_id": f"m{i}"}, key=f"inbound:m{i}",
                   order_key=f"from:email:customer{i}@example.com")
            for i in range(start, start + n)]


async def claim_cost(folder: Path, pending: int, claims: int) -> float:
    """Seconds per claim + completion with ``pending`` jobs waiting besides those claimed."""
    async with SqliteStore(folder / f"claims-{pending}.db") as store:
        for offset in range(0, pending + claims, 5000):
            await store.enqueue(backlog(min(5000, pending + claims - offset), offset))
        started = time.perf_counter()
        for _ in range(claims):
            job = await store.claim_job("bench", LEASE)
            assert job is not None
            await store.complete_job(job.id, attempt=job.attempts)
        return (time.perf_counter() - started) / claims


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=200, help="claims per row")
    parser.add_argument("--sizes", default="0,10000,100000", help="backlog sizes")
    parser.add_argument("--quick", action="store_true", help="a tiny run (the smoke test)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    claims = args.claims
    if args.quick:
        sizes, claims = [0, 500], 20
    with tempfile.TemporaryDirectory() as tmp:
        costs = {n: await claim_cost(Path(tmp), n, claims) for n in sizes}
    base = costs[sizes[0]]
    rows = [[f"{n:,} pending", f"{cost * 1e6:,.0f}", f"{1 / cost:,.0f}", f"{cost / base:.2f}x"]
            for n, cost in costs.items()]
    print(machine())
    print(table(["backlog", "µs per claim", "claims/s", "vs empty"], rows))


if __name__ == "__main__":
    asyncio.run(main())
