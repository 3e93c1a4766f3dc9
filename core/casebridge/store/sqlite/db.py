"""The SQLite store's file, connections, clock and transaction helpers, shared by the parts
(conversations, writes, state, jobs) composed into :class:`~casebridge.store.sqlite.SqliteStore`.

One writer connection per store, used under a lock (SQLite serializes writers anyway); reads
use their own WAL connections (:mod:`.readers`) and never wait for that lock. A transaction
runs on the event loop's thread when nothing can make it wait (the lock free, SQLite's write
lock taken without waiting), else on an anyio worker thread, which waits and keeps the loop
free; WAL checkpoints always run on a worker thread, on a connection of their own. Every
write runs in ``BEGIN IMMEDIATE`` so two processes sharing the file queue on the write lock
instead of failing on a stale snapshot; ``busy_timeout`` bounds that wait. Commits use
``synchronous=NORMAL`` (durable across a process crash); a transaction may ask for ``FULL``
(durable across power loss), as accepting an inbound does: those that arrive while one
commits share the next commit (:mod:`.group_commit`).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread

from ...model import utcnow
from .group_commit import GroupCommit, Pending, run_each
from .migrate import apply_migrations, load_migrations
from .readers import ReaderPool

__all__ = ["Clock", "Database"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], datetime]

# Commits between two WAL checkpoints (run on a worker thread, see Database.tx).
CHECKPOINT_EVERY = 250


class Database:
    """One SQLite file: a writer connection behind :attr:`writer_lock`, and readers."""

    def __init__(self, path: Path | str, *, clock: Clock = utcnow, busy_timeout: float = 30.0
                 ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._readers: ReaderPool | None = None
        # Held for the whole of each write transaction (and by tests that stall the writer).
        self.writer_lock = threading.Lock()
        # Set while a transaction of this process runs on a worker thread (see tx).
        self._on_thread: anyio.Event | None = None
        self._full_sync = GroupCommit(self._commit_group)
        self._commits = 0  # since the last checkpoint
        # Checkpoints have their own connection (see _checkpoint), used under this lock.
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoint_lock = threading.Lock()
        self._checkpointing = False

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    def now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the store's clock must return timezone-aware datetimes")
        return now

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        self._conn = await anyio.to_thread.run_sync(self._open_sync)
        self._readers = ReaderPool(self.path, self._busy_timeout)

    def _open_sync(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.row_factory = sqlite3.Row
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            apply_migrations(conn, load_migrations(), self.now())
            # From here on a write tries the lock without waiting (see _in_tx_now); only the
            # worker-thread path (_in_tx) waits, up to busy_timeout.
            conn.execute("PRAGMA busy_timeout = 0")
            # No checkpoint inside a commit: that one writes the WAL back and syncs the file,
            # which on the event loop's thread stalls every worker (measured: handoffs/s
            # halved, at random, on a busy disk). tx checkpoints on a worker thread instead.
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        readers, self._readers = self._readers, None
        if readers is not None:
            await anyio.to_thread.run_sync(readers.close)
        conn, self._conn = self._conn, None
        if conn is not None:
            await anyio.to_thread.run_sync(self._close_sync, conn)
        await anyio.to_thread.run_sync(self._close_checkpointer)

    def _close_sync(self, conn: sqlite3.Connection) -> None:
        with self.writer_lock:
            conn.close()

    async def ping(self) -> None:
        await self.read(lambda c: c.execute("SELECT 1").fetchone())

    async def schema_version(self) -> int:
        sql = "SELECT COALESCE(MAX(version), 0) FROM schema_version"
        return await self.read(lambda conn: int(conn.execute(sql).fetchone()[0]))

    # -- transactions ------------------------------------------------------------------

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` on a reader connection, in one snapshot; never waits for the writer."""
        readers = self._readers
        if readers is None:
            raise RuntimeError(f"{self!r} is not open: call open() or use 'async with'")
        # A WAL read takes no lock to wait for: run it here, as writes do (see tx), when a
        # reader connection is free.
        ran, result = readers.try_run(fn)
        if ran:
            return result  # type: ignore[return-value]
        return await anyio.to_thread.run_sync(readers.run, fn)

    async def tx(self, fn: Callable[[sqlite3.Connection], T], *, full_sync: bool = False) -> T:
        """``fn`` in one write transaction (``BEGIN IMMEDIATE``), committed when it returns
        and rolled back when it raises; ``full_sync`` commits with ``synchronous=FULL``."""
        conn = self._conn
        if conn is None:
            raise RuntimeError(f"{self!r} is not open: call open() or use 'async with'")
        self._checkpoint_if_due()
        if full_sync:
            return await self._full_sync.run(fn)
        # One transaction of this process at a time. While one runs on a worker thread (a
        # full-sync commit's fsync), the others wait here on the event loop, without a thread
        # each, and all go on together when it ends: each is then run here at once. (A lock
        # handed from one waiter to the next cost each a turn of the event loop: the
        # transactions queued behind a commit held the next commit, and the SMTP client
        # waiting for it, some 1.5 ms in a burst.)
        if self._full_sync.busy:  # accepts first (see group_commit.GIVE_WAY)
            await self._full_sync.give_way()
        while self._on_thread is not None:
            await self._on_thread.wait()
        if self.writer_lock.acquire(blocking=False):
            # Nothing can make this transaction wait (this lock is free, and SQLite's write
            # lock is tried without waiting): run it here on the event loop's thread. A
            # transaction is shorter than the hop to a worker thread (about 60 us of CPU,
            # measured), and a handoff makes some 3N+12 of them. A FULL sync (an fsync) and
            # anything that would wait go to a worker thread.
            try:
                ran, result = self._in_tx_now(conn, fn)
            finally:
                self.writer_lock.release()
            if ran:
                self._commits += 1
                return result  # type: ignore[return-value]
        # The lock is held (a test stalls the writer), or another process holds SQLite's.
        result = await self._run_on_thread(partial(self._in_tx, conn, fn, False))
        self._commits += 1
        return result

    async def _run_on_thread(self, work: Callable[[], T]) -> T:
        """``work`` (a transaction) on a worker thread, this process's others held back."""
        while self._on_thread is not None:
            await self._on_thread.wait()
        on_thread = self._on_thread = anyio.Event()
        try:
            return await anyio.to_thread.run_sync(work)
        finally:
            self._on_thread = None
            on_thread.set()

    async def _commit_group(self, group: list[Pending]) -> None:
        """Full-sync transactions queued together (see group_commit): one transaction on
        a worker thread, each in its savepoint, committed with one fsync."""
        conn = self._conn
        if conn is None:
            raise RuntimeError(f"{self!r} is not open: call open() or use 'async with'")
        try:
            await self._run_on_thread(
                partial(self._in_tx, conn, partial(run_each, group=group), True))
        except Exception as exc:  # BEGIN or COMMIT failed: none of the group is stored
            for pending in group:
                pending.result, pending.error = None, exc
        for pending in group:
            pending.finished = True
        self._commits += 1

    def _checkpoint_if_due(self) -> None:
        # SQLite's own rule is a checkpoint once the WAL holds 1,000 pages; a few pages a
        # commit makes every CHECKPOINT_EVERY commits about that. It runs beside the
        # transactions, on a thread of its own that nothing waits for: awaited before the
        # next transaction, it held that transaction (an SMTP client's 250, say) for the
        # whole checkpoint, some 16 ms, once every CHECKPOINT_EVERY commits.
        if self._commits >= CHECKPOINT_EVERY and not self._checkpointing:
            self._commits = 0
            self._checkpointing = True
            threading.Thread(target=self._checkpoint_in_background, daemon=True,
                             name="casebridge-checkpoint").start()

    def _checkpoint_in_background(self) -> None:
        try:
            self._checkpoint()
        except sqlite3.Error as exc:  # the WAL grows until the next one; nothing is lost
            log.warning("WAL checkpoint of %s failed: %s", self.path, exc)
        finally:
            self._checkpointing = False

    def _checkpoint(self) -> None:
        # On a connection of its own, not the writer's: a PASSIVE checkpoint takes no write
        # lock in WAL mode, so writes go on meanwhile, on the loop's thread. Under the
        # writer's lock every write made during a checkpoint (an fsync, slow on a busy disk)
        # went to a worker thread, and the writes queued behind it too (measured: one
        # transaction in seven of a handoff run).
        with self._checkpoint_lock:
            if self._checkpointer is None:
                if self._conn is None:
                    return  # closed meanwhile
                self._checkpointer = sqlite3.connect(self.path, isolation_level=None,
                                                     check_same_thread=False)
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _close_checkpointer(self) -> None:
        with self._checkpoint_lock:
            checkpointer, self._checkpointer = self._checkpointer, None
            if checkpointer is not None:
                checkpointer.close()

    def _in_tx_now(
        self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]
    ) -> tuple[bool, T | None]:
        """``fn`` in a transaction if SQLite's write lock is free now: (True, its result);
        (False, None) without running it when another connection holds the lock. The
        caller holds ``writer_lock``."""
        try:
            conn.execute("BEGIN IMMEDIATE")  # busy_timeout is 0 here: this never waits
        except sqlite3.OperationalError:
            return False, None  # SQLITE_BUSY: another process is writing
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return True, result

    def _in_tx(
        self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], full_sync: bool
    ) -> T:
        with self.writer_lock:
            if full_sync:
                conn.execute("PRAGMA synchronous = FULL")
            try:
                # Here, on a worker thread, the write lock may be waited for.
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
                try:
                    conn.execute("BEGIN IMMEDIATE")
                finally:
                    conn.execute("PRAGMA busy_timeout = 0")
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                return result
            finally:
                if full_sync:
                    conn.execute("PRAGMA synchronous = NORMAL")
