"""SQLite transactions run on the event loop's thread when nothing can make them wait, and on
a worker thread (waiting for the lock) when something can: another process's write
transaction, or this store's writer busy on a thread."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import anyio
import pytest
from casebridge.store import NewJob
from casebridge.store.sqlite import SqliteStore
from support.stores import FakeClock


def threads_used(store: SqliteStore) -> set[int]:
    """Record the thread each transaction runs on (wraps the store's plumbing)."""
    seen: set[int] = set()
    now, threaded = store.db._in_tx_now, store.db._in_tx

    def in_tx_now(*args, **kw):  # type: ignore[no-untyped-def]
        ran, result = now(*args, **kw)
        if ran:
            seen.add(threading.get_ident())
        return ran, result

    def in_tx(*args, **kw):  # type: ignore[no-untyped-def]
        seen.add(threading.get_ident())
        return threaded(*args, **kw)

    store.db._in_tx_now, store.db._in_tx = in_tx_now, in_tx  # type: ignore[method-assign]
    return seen


async def test_an_uncontended_write_runs_on_the_loop_thread(tmp_path: Path,
                                                            clock: FakeClock) -> None:
    async with SqliteStore(tmp_path / "c.db", clock=clock) as store:
        seen = threads_used(store)
        await store.enqueue([NewJob("k", {}, key="a")])
        assert seen == {threading.get_ident()}
        assert (await store.job_counts())["pending"] == 1


async def test_a_write_waits_on_a_thread_for_another_process_lock(tmp_path: Path,
                                                                  clock: FakeClock) -> None:
    async with SqliteStore(tmp_path / "c.db", clock=clock) as store:
        seen = threads_used(store)
        other = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process writing
        try:
            async with anyio.create_task_group() as tg:
                done = anyio.Event()

                async def write() -> None:
                    await store.enqueue([NewJob("k", {}, key="a")])
                    done.set()

                tg.start_soon(write)
                # The loop stays free while the write waits for the lock.
                await anyio.sleep(0.3)
                assert not done.is_set()
                other.execute("COMMIT")
                with anyio.fail_after(10):
                    await done.wait()
        finally:
            other.close()
        assert seen and threading.get_ident() not in seen
        assert (await store.job_counts())["pending"] == 1
        # Once the lock is free again, writes are back on the loop thread.
        seen.clear()
        await store.enqueue([NewJob("k", {}, key="b")])
        assert seen == {threading.get_ident()}


async def test_a_failing_inline_transaction_rolls_back(tmp_path: Path,
                                                       clock: FakeClock) -> None:
    async with SqliteStore(tmp_path / "c.db", clock=clock) as store:
        def fail(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO plugin_state (plugin, key, value, updated_at)"
                         " VALUES ('p', 'k', '1', '2026-01-01')")
            raise RuntimeError("boom")

        with pytest.raises(RuntimeError, match="boom"):
            await store.db.tx(fail)
        assert await store.get_state("p", "k") is None
        await store.put_state("p", "k", 2)  # the writer is usable afterwards
        assert await store.get_state("p", "k") == 2


async def test_checkpoints_run_on_a_worker_thread(tmp_path: Path, clock: FakeClock,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from casebridge.store.sqlite import db

    monkeypatch.setattr(db, "CHECKPOINT_EVERY", 5)
    async with SqliteStore(tmp_path / "c.db", clock=clock) as store:
        # Never inside a commit (that would be on the loop's thread)...
        assert store.db._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        ran_on: list[int] = []
        checkpoint = store.db._checkpoint

        def spy() -> None:
            ran_on.append(threading.get_ident())
            checkpoint()

        store.db._checkpoint = spy  # type: ignore[method-assign]
        for n in range(12):
            await store.put_state("p", f"k{n}", n)
            with anyio.fail_after(10):
                while store.db._checkpointing:  # noqa: ASYNC110 - a flag, no event
                    await anyio.sleep(0.001)
        # ...but every CHECKPOINT_EVERY commits, on a thread of its own, the WAL written back.
        assert len(ran_on) == 2 and threading.get_ident() not in ran_on
        wal = sqlite3.connect(tmp_path / "c.db")
        try:
            busy, frames, done = wal.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        finally:
            wal.close()
        assert busy == 0 and done == frames


async def test_writes_go_on_on_the_loop_thread_while_a_checkpoint_runs(
        tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    from casebridge.store.sqlite import db

    monkeypatch.setattr(db, "CHECKPOINT_EVERY", 1)
    async with SqliteStore(tmp_path / "c.db", clock=clock) as store:
        await store.put_state("p", "first", 0)
        seen = threads_used(store)
        store.db._checkpoint_lock.acquire()  # the checkpoint the next write starts stalls
        try:
            with anyio.fail_after(10):
                # The write that makes one due does not wait for it, nor do the next.
                await store.put_state("p", "second", 1)
                assert store.db._checkpointing
                for n in range(5):
                    await store.put_state("p", f"k{n}", n)
            assert seen == {threading.get_ident()} and store.db._checkpointing
        finally:
            store.db._checkpoint_lock.release()
        with anyio.fail_after(10):
            while store.db._checkpointing:  # noqa: ASYNC110 - a flag, no event
                await anyio.sleep(0.01)
        assert [await store.get_state("p", k) for k in ("second", "k4")] == [1, 4]


async def test_a_commit_returns_without_waiting_for_a_checkpoint(
        tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    from casebridge.store.sqlite import db

    monkeypatch.setattr(db, "CHECKPOINT_EVERY", 1)
    async with SqliteStore(tmp_path / "c.db", clock=clock) as store:
        store.db._checkpoint_lock.acquire()  # any checkpoint would stall
        try:
            with anyio.fail_after(5):
                await store.put_state("p", "k", 1)  # the commit that makes one due
            assert not store.db._checkpointing
        finally:
            store.db._checkpoint_lock.release()
