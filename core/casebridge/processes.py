"""Worker processes for CPU-bound pure work, so one runner uses more than one core.

A runner's event loop, and every thread it starts, share one interpreter lock: parsing mail
in a worker thread keeps the loop answering, but not on a second core. :class:`Processes`
runs such work in a small pool of worker processes instead (``concurrent.futures``; each
call pickles the function and its arguments to an idle worker and its result back).

The pool starts on first use, from a fork server where the platform has one (a fresh
interpreter forked per worker, never a copy of this threaded process) and stops with the
runner. A worker that dies fails the calls it had (the jobs that made them are retried) and
the next call starts a new pool. With no processes configured the work runs in a thread.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar, TypeVarTuple

import anyio.to_thread

__all__ = ["BrokenProcessPool", "Processes", "default_processes"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


def default_processes() -> int:
    """One worker per usable core beyond the first, which the event loop keeps; at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(0, min(cores - 1, 4))


def _context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


class Processes:
    """At most ``count`` calls at a time, each in a worker process (0: in a thread)."""

    def __init__(self, count: int) -> None:
        if count < 0:
            raise ValueError("count must be 0 or more")
        self.count = count
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        """``fn(*args)`` in a worker process; ``fn`` must be a module-level function and
        its arguments and result picklable. Its exception is raised here, and
        ``BrokenProcessPool`` when the worker died."""
        if self.count == 0:
            return await anyio.to_thread.run_sync(fn, *args)
        pool = self._pool
        if pool is None:
            pool = self._pool = ProcessPoolExecutor(self.count, mp_context=_context())
        try:
            return await asyncio.wrap_future(pool.submit(fn, *args))
        except BrokenProcessPool:
            if self._pool is pool:  # the first call to see it starts the next pool
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
            raise

    def close(self) -> None:
        """Stop the workers (they finish what they run; nothing new is taken)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
