"""Read-only SQLite connections beside the store's one writer, so reads (threading lookups,
transcripts, next_run_at) never queue behind the writer's lock; in WAL mode each reads the
latest committed snapshot while a write is in progress."""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["ReaderPool"]

T = TypeVar("T")


class ReaderPool:
    """Up to ``size`` reader connections, opened on demand and handed to one thread at a
    time (``check_same_thread`` is off for that reason only)."""

    def __init__(self, path: Path, busy_timeout: float, size: int = 4) -> None:
        if size < 1:
            raise ValueError(f"ReaderPool size must be >= 1, got {size}")
        self._path = path
        self._busy_timeout = busy_timeout
        self._size = size
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._closed = False

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA query_only = ON")
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        return conn

    def _take(self) -> sqlite3.Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._guard:
            if self._closed:
                raise RuntimeError(f"the store's readers of {self._path} are closed")
            if len(self._all) < self._size:
                conn = self._open()
                self._all.append(conn)
                return conn
        return self._idle.get()

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` in one read transaction (one consistent snapshot); call from a thread."""
        conn = self._take()
        try:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")
        finally:
            self._idle.put(conn)

    def try_run(self, fn: Callable[[sqlite3.Connection], T]) -> tuple[bool, T | None]:
        """``fn`` as :meth:`run` does, on this thread, when a connection is free now:
        (True, its result); (False, None) without running it when all are taken."""
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            with self._guard:
                if self._closed or len(self._all) >= self._size:
                    return False, None
                conn = self._open()
                self._all.append(conn)
        try:
            conn.execute("BEGIN")
            try:
                return True, fn(conn)
            finally:
                conn.execute("COMMIT")
        finally:
            self._idle.put(conn)

    def close(self) -> None:
        with self._guard:
            self._closed = True
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
