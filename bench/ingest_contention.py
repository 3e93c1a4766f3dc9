"""Does ingest wait behind outbox work? ``accept_inbound`` latency on the SQLite store alone,
then while outbox-like load runs on the same store: claim + complete loops over a backlog
and the reads a worker does (next_run_at, transcripts). Ratios are against the idle row of
the same run. ``--core`` runs it against another checkout's ``core/`` (the "before")."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import anyio


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--core", type=Path, help="import casebridge from this core/ folder")
    parser.add_argument("--accepts", type=int, default=300)
    parser.add_argument("--backlog", type=int, default=3000)
    parser.add_argument("--loops", type=int, default=4, help="concurrent claim loops")
    parser.add_argument("--quick", action="store_true")
    return parser.parse_args()


ARGS = parse()
if ARGS.core:
    sys.path.insert(0, str(ARGS.core.resolve()))

from casebridge.model import Author, Direction, Message, utcnow  # noqa: E402
from casebridge.store import NewJob  # noqa: E402

try:
    from casebridge.store.sqlite import SqliteStore
except ImportError:  # --core names a checkout from before the store package
    from casebridge.sqlite_store import SqliteStore  # type: ignore[no-redef]
from common import percentile, report  # noqa: E402

LEASE = timedelta(seconds=60)


def make_message(n: int) -> Message:
    now = utcnow()
    return Message(id=f"msg-{n}", channel="email", direction=Direction.INBOUND,
                   author=Author.CUSTOMER, external_id=f"<{n}@mail.example.com>",
                   sender=f"c{n}@example.com", recipients=("support@example.org",),
                   text=f"message {n}", sent_at=now, received_at=now)


async def accepts(store: SqliteStore, n: int, start: int) -> list[float]:
    times = []
    for i in range(start, start + n):
        message = make_message(i)
        job = NewJob("inbound", {"message_id": message.id}, key=f"in:{message.id}",
                     order_key=f"from:{i}")
        t0 = time.perf_counter()
        assert await store.accept_inbound(message, job)
        times.append(time.perf_counter() - t0)
    return times


async def outbox_load(store: SqliteStore, stop: anyio.Event) -> None:
    while not stop.is_set():
        job = await store.claim_job("bench", LEASE, ["work"])
        if job is None:
            await anyio.sleep(0.001)
            continue
        await store.next_run_at(["work"])
        await store.transcript("nobody")
        await store.complete_job(job.id, attempt=job.attempts)


async def run() -> None:
    n, backlog = (40, 300) if ARGS.quick else (ARGS.accepts, ARGS.backlog)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        async with SqliteStore(Path(tmp) / "c.db") as store:
            await store.enqueue([NewJob("work", {}, key=f"w{i}", order_key=f"o{i}")
                                 for i in range(backlog)])
            idle = await accepts(store, n, 0)
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                for _ in range(ARGS.loops):
                    tg.start_soon(outbox_load, store, stop)
                busy = await accepts(store, n, n)
                stop.set()
    base = percentile(idle, 50)
    for label, times in (("idle store", idle), (f"{ARGS.loops} claim loops, {backlog:,} backlog",
                                                busy)):
        p50, p99 = percentile(times, 50), percentile(times, 99)
        rows.append([label, f"{p50 * 1e3:.2f}", f"{p99 * 1e3:.2f}", f"{p50 / base:.2f}x"])
    import casebridge

    report("accept_inbound under outbox load (SQLite)",
           [f"casebridge from {Path(casebridge.__file__).parent}; {n} accepts per row"],
           ["accept_inbound", "p50 ms", "p99 ms", "p50 vs idle"], rows)


if __name__ == "__main__":
    anyio.run(run)
