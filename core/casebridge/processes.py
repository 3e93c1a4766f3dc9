"""Worker processes for CPU-bound pure work, so one runner uses more than one core.

A runner's event loop, and every thread it starts, share one interpreter lock: parsing mail
in a worker thread keeps the loop answering, but not on a second core. :class:`Processes`
runs such work in a few worker processes instead (:mod:`casebridge.process_worker`: each
call pickles the function and its arguments down a pipe to a worker, and the outcome comes
back up another, in the order the calls went down). The event loop reads the pipes itself,
in a protocol's callbacks: no thread and no task sits between.

Each worker has up to ``DEPTH`` calls in its pipe at once: while it runs one, the next is
already there, so the worker never waits for the loop to hand it work and the loop never
waits for the worker to ask (one call at a time left both idle half the time).

Workers start on first use (a fresh interpreter each, never a copy of this threaded
process) and end with the runner. A worker that dies fails the call it was running (the job
that made it is retried); the calls queued behind it go to a new worker, since the work is
pure and none of it ran. A call cancelled while its worker runs it takes the worker with it
(its answer would have no reader, and the work may be long); one cancelled while still
queued is skipped when its answer comes.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import sys
from collections import deque
from collections.abc import Callable
from typing import TypeVar, TypeVarTuple

import anyio
import anyio.to_thread

__all__ = ["DEPTH", "Processes", "WorkerDied", "default_processes"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# Calls in one worker's pipe at once: the one it runs and two behind it, so it never waits
# for the event loop between calls; few, since those behind a call that kills the worker
# start again on another.
DEPTH = 3
_STOP_TIMEOUT = 5.0
_MAX_HEADER = 20


class WorkerDied(RuntimeError):
    """The worker process running a call ended before it answered."""


class _Requeue(Exception):  # a signal between two methods, never raised out
    """The call's worker died before running it: send it to another."""


def default_processes() -> int:
    """One worker per usable core beyond the first, which the event loop keeps; at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(0, min(cores - 1, 4))


class _Worker(asyncio.SubprocessProtocol):
    """One worker process: its calls in flight, oldest (the running one) first."""

    def __init__(self) -> None:
        self.pending: deque[asyncio.Future[bytes]] = deque()
        self.dead = False
        self.pid = 0
        self._transport: asyncio.SubprocessTransport | None = None
        self._buffer = bytearray()
        self._exited: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def start(cls) -> _Worker:
        loop = asyncio.get_running_loop()
        _, worker = await loop.subprocess_exec(
            cls, sys.executable, "-m", "casebridge.process_worker", stderr=None)
        return worker

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self._transport = transport
        self.pid = transport.get_pid()

    def send(self, request: bytes) -> asyncio.Future[bytes]:
        assert self._transport is not None and not self.dead
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        pipe = self._transport.get_pipe_transport(0)
        assert isinstance(pipe, asyncio.WriteTransport)
        # One write of the whole frame: the transport keeps it whole whatever happens next.
        pipe.write(b"%d\n" % len(request) + request)
        self.pending.append(future)
        return future

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd != 1:
            return
        buffer = self._buffer
        buffer += data
        while buffer:
            end = buffer.find(b"\n", 0, _MAX_HEADER)
            if end < 0 and len(buffer) < _MAX_HEADER:
                break  # the rest of the header is still to come
            try:
                if end < 0:
                    raise ValueError("no header")
                size = int(buffer[:end])
            except ValueError:
                self.kill()  # not our framing: nothing after this can be trusted
                return
            if len(buffer) < end + 1 + size:
                break
            answer = bytes(buffer[end + 1:end + 1 + size])
            del buffer[:end + 1 + size]
            if self.pending:
                future = self.pending.popleft()
                if not future.done():  # a call cancelled while queued has no reader
                    future.set_result(answer)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self._died()

    def process_exited(self) -> None:
        self._died()
        if not self._exited.done():
            self._exited.set_result(None)

    def _died(self) -> None:
        if self.dead:
            return
        self.dead = True
        if self.pending:  # the running call fails; the ones behind it never ran
            running = self.pending.popleft()
            if not running.done():
                running.set_exception(
                    WorkerDied(f"the worker process {self.pid} ended mid-call"))
        while self.pending:
            queued = self.pending.popleft()
            if not queued.done():
                queued.set_exception(_Requeue())
        if self._transport is not None:
            self._transport.close()

    def running(self, future: asyncio.Future[bytes]) -> bool:
        return bool(self.pending) and self.pending[0] is future

    async def stop(self) -> None:
        if self._transport is None or self.dead:
            return
        pipe = self._transport.get_pipe_transport(0)
        if pipe is not None:
            pipe.close()  # the worker ends at the end of its input
        try:
            with anyio.fail_after(_STOP_TIMEOUT):
                await asyncio.shield(self._exited)
        except TimeoutError:
            self.kill()
        self._transport.close()

    def kill(self) -> None:
        if self._transport is not None and self._transport.get_returncode() is None:
            self._transport.kill()
        self._died()


class Processes:
    """At most ``count`` worker processes, each with up to ``DEPTH`` calls in flight (0
    processes: each call in a thread)."""

    def __init__(self, count: int) -> None:
        if count < 0:
            raise ValueError("count must be 0 or more")
        self.count = count
        self._limiter: anyio.CapacityLimiter | None = None
        self._starting: anyio.Lock | None = None
        self._workers: list[_Worker] = []

    async def run(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        """``fn(*args)`` in a worker process; ``fn`` must be a module-level function and
        its arguments and result picklable. Its exception is raised here, and
        :class:`WorkerDied` when the worker process ended while running it."""
        if self.count == 0:
            return await anyio.to_thread.run_sync(fn, *args)
        request = pickle.dumps((fn, args), pickle.HIGHEST_PROTOCOL)
        if self._limiter is None:  # made on the event loop that uses them
            self._limiter = anyio.CapacityLimiter(self.count * DEPTH)
            self._starting = anyio.Lock()
        async with self._limiter:
            while True:
                worker = await self._least_busy()
                future = worker.send(request)
                try:
                    answer = await future
                except _Requeue:
                    continue
                except BaseException:
                    if worker.running(future):
                        worker.kill()  # cancelled while running: nobody wants its answer
                    raise
                break
        ok, value = pickle.loads(answer)  # noqa: S301 -- from the worker we started
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    async def _least_busy(self) -> _Worker:
        assert self._starting is not None
        self._workers = [worker for worker in self._workers if not worker.dead]
        if len(self._workers) < self.count:
            async with self._starting:
                while len(self._workers) < self.count:
                    self._workers.append(await _Worker.start())
        return min(self._workers, key=lambda worker: len(worker.pending))

    async def aclose(self) -> None:
        """Stop every worker: idle ones end at the end of their input, busy ones are
        killed (their calls fail)."""
        workers, self._workers = self._workers, []
        with anyio.CancelScope(shield=True):
            for worker in workers:
                if worker.pending:
                    worker.kill()
                else:
                    await worker.stop()
