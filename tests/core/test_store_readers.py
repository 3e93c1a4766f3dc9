"""SQLite reads run on their own connections: a read answers while the writer is busy, and
sees what the writer committed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anyio
from casebridge.store import NewJob
from casebridge.store.sqlite import SqliteStore
from support.stores import FakeClock


async def test_reads_do_not_wait_for_the_writer(tmp_path: Path, clock: FakeClock) -> None:
    async with SqliteStore(tmp_path / "c.db", clock=clock) as store:
        await store.enqueue([NewJob("k", {}, key="a")])
        release = threading.Event()
        held = threading.Event()

        def hold_writer() -> None:
            # What a long write transaction does to everyone else using the writer.
            with store.db.writer_lock:
                held.set()
                release.wait(10)

        thread = threading.Thread(target=hold_writer)
        thread.start()
        try:
            held.wait(5)
            started = time.monotonic()
            with anyio.fail_after(5):
                counts = await store.job_counts()
                jobs = await store.list_jobs()
            assert time.monotonic() - started < 5
            assert counts["pending"] == 1 and [j.key for j in jobs] == ["a"]
        finally:
            release.set()
            thread.join()


async def test_reads_see_each_committed_write(tmp_path: Path, clock: FakeClock) -> None:
    async with SqliteStore(tmp_path / "c.db", clock=clock) as store:
        for n in range(20):
            await store.enqueue([NewJob("k", {}, key=f"j{n}")])
            assert (await store.job_counts())["pending"] == n + 1
