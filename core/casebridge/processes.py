"""Worker processes for CPU-bound pure work, so one runner uses more than one core.

A runner's event loop, and every thread it starts, share one interpreter lock: parsing mail
in a worker thread keeps the loop answering, but not on a second core. :class:`Processes`
runs such work in a few worker processes instead (:mod:`casebridge.process_worker`: each
call pickles the function and its arguments down a pipe to an idle worker, and the outcome
comes back up another). The event loop talks to the pipes itself: no thread sits between.

Workers start on first use (a fresh interpreter each, never a copy of this threaded
process) and end with the runner. A worker that dies fails the call it ran (the job that
made it is retried) and is replaced on the next call; so is one whose call was cancelled,
since its answer would no longer have a reader.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

import anyio
import anyio.to_thread

__all__ = ["Processes", "WorkerDied", "default_processes"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_STOP_TIMEOUT = 5.0


class WorkerDied(RuntimeError):
    """The worker process running a call ended before it answered."""


def default_processes() -> int:
    """One worker per usable core beyond the first, which the event loop keeps; at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(0, min(cores - 1, 4))


class _Worker:
    """One worker process and its two pipes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        assert process.stdin is not None and process.stdout is not None
        self._calls, self._outcomes = process.stdin, process.stdout

    @classmethod
    async def start(cls) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "casebridge.process_worker",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        return cls(process)

    async def call(self, request: bytes) -> object:
        self._calls.write(b"%d\n" % len(request) + request)
        try:
            await self._calls.drain()
            header = await self._outcomes.readline()
            if not header:
                raise WorkerDied(f"the worker process {self.process.pid} ended mid-call")
            ok, value = pickle.loads(await self._outcomes.readexactly(int(header)))  # noqa: S301
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            raise WorkerDied(f"the worker process {self.process.pid} ended mid-call") from exc
        if not ok:
            raise value  # type: ignore[misc]
        return value

    async def stop(self) -> None:
        if self.process.returncode is None:
            self._calls.close()  # the worker ends at the end of its input
            try:
                with anyio.fail_after(_STOP_TIMEOUT):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


class Processes:
    """At most ``count`` calls at a time, each in a worker process (0: in a thread)."""

    def __init__(self, count: int) -> None:
        if count < 0:
            raise ValueError("count must be 0 or more")
        self.count = count
        self._limiter: anyio.CapacityLimiter | None = None
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()

    async def run(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        """``fn(*args)`` in a worker process; ``fn`` must be a module-level function and
        its arguments and result picklable. Its exception is raised here, and
        :class:`WorkerDied` when the worker process ended mid-call."""
        if self.count == 0:
            return await anyio.to_thread.run_sync(fn, *args)
        request = pickle.dumps((fn, args), pickle.HIGHEST_PROTOCOL)
        if self._limiter is None:  # made on the event loop that uses it
            self._limiter = anyio.CapacityLimiter(self.count)
        async with self._limiter:
            worker = self._idle.pop() if self._idle else await _Worker.start()
            self._busy.add(worker)
            try:
                result = await worker.call(request)
            except BaseException as exc:
                self._busy.discard(worker)
                if isinstance(exc, WorkerDied) or not isinstance(exc, Exception):
                    worker.kill()  # dead, or cancelled with its answer still to come
                else:
                    self._idle.append(worker)  # the function raised: the worker is fine
                raise
            self._busy.discard(worker)
            self._idle.append(worker)
            return result  # type: ignore[return-value]

    async def aclose(self) -> None:
        """Stop every worker: idle ones end at the end of their input, busy ones are
        killed (their calls fail)."""
        for worker in self._busy:
            worker.kill()
        idle, self._idle, self._busy = self._idle, [], set()
        with anyio.CancelScope(shield=True):
            for worker in idle:
                await worker.stop()
