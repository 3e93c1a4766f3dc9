"""The job runner: claims jobs from the store's outbox and runs their handlers.

Each of ``workers`` concurrent loops claims one job at a time (only kinds it has a handler
for), runs the handler and records the outcome:

* the handler returns follow-up jobs (or None): the job is done and the follow-ups are
  enqueued in the same transaction;
* it raises :class:`~casebridge.errors.PermanentError`: dead at once, the error kept;
* it raises :class:`~casebridge.errors.TransientError` or any other exception: retried after
  the policy's backoff delay, or after ``retry_after`` when that is longer (a remote
  ``Retry-After`` is honoured as a minimum); unexpected exceptions are logged with their
  traceback. Once ``attempts`` reaches the job's budget the job is dead instead.

Leases: a claim holds the job for ``lease``; while the handler runs, the runner renews the
lease every third of it, so a slow handler keeps its job and a killed process loses it
within one lease, after which any runner reclaims it. A claim that finds its budget already
spent (the previous holder died during its last attempt) dead-letters the job unrun. Every
outcome is written fenced by the attempt number, so a runner that lost its lease cannot
overwrite the newer holder's result.

Wake-ups: an idle loop sleeps until woken or ``poll_interval`` passes. A finished job wakes
one idle loop per follow-up job it enqueued, plus one for the next job of its order key, not
every idle loop: with many workers a broadcast made each finished job cost a claim query per
idle loop. A loop woken while its own claim was finding a job passes the wake-up on.

All state lives in the store; several runner processes may share one database.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

import anyio
from anyio.abc import TaskStatus

from .backoff import BackoffPolicy, RandomSource, delay
from .errors import PermanentError, TransientError
from .model import utcnow
from .store import Job, JobQueue, NewJob

__all__ = ["Handler", "Outbox", "OutboxEvent"]

log = logging.getLogger("casebridge.outbox")

Handler = Callable[[Job], Awaitable[Sequence[NewJob] | None]]
EventKind = Literal["claimed", "done", "retry", "dead", "lease_lost", "released"]

MAX_ERROR_CHARS = 2000
_RECHECK = 0.05


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """What happened to a job, for metrics and logs.

    ``delay`` is the seconds until a retry; ``duration`` the seconds the handler ran.
    """

    kind: EventKind
    job: Job
    worker_id: str
    error: str = ""
    delay: float | None = None
    duration: float = 0.0


def error_text(exc: BaseException, limit: int = MAX_ERROR_CHARS) -> str:
    """One line naming the exception, truncated. Exception messages are secret-free by
    contract (see :mod:`casebridge.errors`)."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Outbox:
    """Runs the outbox's jobs through ``handlers`` (job kind -> async handler).

    ``worker_id`` names this process (its loops are ``worker_id/0``, ``worker_id/1``...);
    ``clock`` is used for retry times and must agree with the store's; ``rng`` draws the
    jitter; ``poll_interval`` is the longest an idle loop sleeps before looking again (jobs
    enqueued by other processes are seen at the latest then; :meth:`wake` is immediate).
    ``on_event`` is called synchronously for every :class:`OutboxEvent`; its errors are
    logged and ignored. ``on_dead`` is awaited after a job is dead-lettered, however it died
    (its own error, its budget, or a runner that died during its last attempt), so the owner
    of the work can say so where people look; its errors are logged and ignored.
    """

    def __init__(
        self,
        store: JobQueue,
        handlers: Mapping[str, Handler],
        *,
        workers: int = 4,
        lease: timedelta,
        policy: BackoffPolicy,
        worker_id: str,
        clock: Callable[[], datetime] = utcnow,
        on_event: Callable[[OutboxEvent], None] | None = None,
        on_dead: Callable[[Job, str], Awaitable[None]] | None = None,
        rng: RandomSource | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        if not handlers:
            raise ValueError("Outbox needs at least one handler")
        if workers < 1:
            raise ValueError(f"Outbox workers must be >= 1, got {workers}")
        if lease <= timedelta(0):
            raise ValueError(f"Outbox lease must be positive, got {lease}")
        if poll_interval <= 0:
            raise ValueError(f"Outbox poll_interval must be positive, got {poll_interval}")
        if not worker_id:
            raise ValueError("Outbox worker_id must not be empty")
        self.store = store
        self.handlers = dict(handlers)
        self.workers = workers
        self.lease = lease
        self.policy = policy
        self.worker_id = worker_id
        self._clock = clock
        self._on_event = on_event
        self._on_dead = on_dead
        self._rng: RandomSource = rng or random.Random()
        self._poll_interval = poll_interval
        self._kinds = sorted(self.handlers)
        # Loops about to claim or idle, oldest first, each with the event that wakes it.
        self._waiters: deque[anyio.Event] = deque()
        # The jobs running now (their leases kept by _keep_leases), by id.
        self._running: dict[int, tuple[Job, str]] = {}

    # -- running -----------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the worker loops until cancelled. A job interrupted by cancellation is put
        back (due at once) for the next runner."""
        async with anyio.create_task_group() as tg:
            # A shared store (PostgreSQL) tells us when any process enqueues work.
            listen = getattr(self.store, "listen_jobs", None)
            if listen is not None:
                tg.start_soon(listen, self.wake)
            tg.start_soon(self._keep_leases)
            for n in range(self.workers):
                tg.start_soon(self._loop, f"{self.worker_id}/{n}")
            task_status.started()

    async def drain(self, timeout: float | None = None) -> int:  # noqa: ASYNC109
        """Run jobs until none is runnable now (pending but not yet due, or leased by a
        live runner, does not count) and return how many were handled. Raises TimeoutError
        after ``timeout`` seconds; store errors propagate."""
        handled = [0] * self.workers

        async def worker(n: int) -> None:
            name = f"{self.worker_id}/{n}"
            job = await self.store.claim_job(name, self.lease, self._kinds)
            while job is not None:
                next_job = await self._process(job, name)
                handled[n] += 1
                job = next_job or await self.store.claim_job(name, self.lease, self._kinds)

        with anyio.fail_after(timeout):
            async with anyio.create_task_group() as keeper:
                keeper.start_soon(self._keep_leases)
                async with anyio.create_task_group() as tg:
                    for n in range(self.workers):
                        tg.start_soon(worker, n)
                keeper.cancel_scope.cancel()
        return sum(handled)

    def wake(self, count: int | None = None) -> None:
        """Nudge idle loops to look for jobs now (after an enqueue in this process): ``count``
        of them, or all when None."""
        n = len(self._waiters) if count is None else min(count, len(self._waiters))
        for _ in range(n):
            self._waiters.popleft().set()

    async def _loop(self, name: str) -> None:
        job: Job | None = None  # claimed with the last one's completion, if any
        while True:
            event = None
            try:
                if job is None:
                    # Registered before the claim, so a wake() during the claim is not lost.
                    event = anyio.Event()
                    self._waiters.append(event)
                    job = await self.store.claim_job(name, self.lease, self._kinds)
                    if job is None:
                        await self._idle(event)
                        continue
                    self._stop_waiting(event)
                job = await self._process(job, name)
            except Exception:
                # The store itself failed (disk full, lock timeout): keep the runner alive;
                # a job caught mid-way is reclaimed when its lease ends.
                job = None
                log.exception("outbox worker %s: store error; retrying shortly", name)
                await anyio.sleep(self._poll_interval)
            finally:
                if event is not None and event in self._waiters:
                    self._waiters.remove(event)

    def _stop_waiting(self, event: anyio.Event) -> None:
        if event.is_set():
            # Woken while its claim found another job: another loop takes the wake-up.
            self.wake(1)
        else:
            self._waiters.remove(event)

    async def _idle(self, event: anyio.Event) -> None:
        wait = self._poll_interval
        next_at = await self.store.next_run_at(self._kinds)
        if next_at is not None:
            until = (next_at - self._clock()).total_seconds()
            # Due already yet not claimed: it fell due during the claim, or waits behind a
            # replayed job of its order key. Look again soon rather than spin.
            wait = min(wait, until if until > 0 else _RECHECK)
        with anyio.move_on_after(wait):
            await event.wait()

    # -- one job -----------------------------------------------------------------------

    def _budget(self, job: Job) -> int:
        return job.max_attempts or self.policy.max_attempts

    async def _process(self, job: Job, name: str) -> Job | None:
        """Run ``job`` and record its outcome; the job claimed with its completion comes
        back (see ``JobQueue.complete_and_claim``: its order key's next job, when due,
        first)."""
        if job.attempts > self._budget(job):
            reason = job.last_error or "no attempts left"
            await self._kill(job, name, f"{reason} (attempt budget of {self._budget(job)} spent)")
            return None
        handler = self.handlers[job.kind]
        self._emit(OutboxEvent("claimed", job, name))
        started = time.monotonic()
        outcome: Sequence[NewJob] | Exception | None = None
        self._running[job.id] = (job, name)
        try:
            outcome = await handler(job)
            outcome = self._follow_ups(job, outcome)
        except Exception as exc:
            outcome = exc
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._release(job, name)
            raise
        finally:
            self._running.pop(job.id, None)
        duration = time.monotonic() - started
        if isinstance(outcome, Exception):
            await self._failed(job, name, outcome, duration)
            return None
        # The completion and this loop's next claim share a transaction.
        done, next_job = await self.store.complete_and_claim(
            job.id, outcome or (), attempt=job.attempts, worker_id=name, lease=self.lease,
            kinds=self._kinds, order_key=job.order_key)
        if done:
            self._emit(OutboxEvent("done", job, name, duration=duration))
            # The follow-ups, and the job of this order key that waited for this one, less
            # the one this loop took.
            self.wake(max(0, len(outcome or ()) + (1 if job.order_key else 0)
                          - (1 if next_job else 0)))
        else:
            self._lost(job, name)
        return next_job

    @staticmethod
    def _follow_ups(job: Job, result: object) -> list[NewJob]:
        if result is None:
            return []
        if isinstance(result, NewJob) or not isinstance(result, Sequence):
            raise TypeError(
                f"handler for {job.kind!r} must return a sequence of NewJob or None,"
                f" not {type(result).__name__}"
            )
        follow_ups = []
        for item in result:
            if not isinstance(item, NewJob):
                raise TypeError(
                    f"handler for {job.kind!r} returned a {type(item).__name__} among its"
                    " follow-up jobs"
                )
            follow_ups.append(item if item.trace_id else replace(item, trace_id=job.trace_id))
        return follow_ups

    async def _failed(self, job: Job, name: str, exc: Exception, duration: float) -> None:
        error = error_text(exc)
        if isinstance(exc, PermanentError):
            await self._kill(job, name, error, duration)
            return
        if not isinstance(exc, TransientError):
            log.error(
                "outbox job %s (%s, key %s, trace %s) failed unexpectedly",
                job.id,
                job.kind,
                job.key,
                job.trace_id or "-",
                exc_info=exc,
            )
        if job.attempts >= self._budget(job):
            await self._kill(
                job, name, f"{error} (gave up after {job.attempts} attempts)", duration
            )
            return
        wait = delay(self.policy, job.attempts, self._rng)
        retry_after = exc.retry_after if isinstance(exc, TransientError) else None
        if retry_after is not None and retry_after > wait:
            wait = retry_after
        run_at = self._clock() + timedelta(seconds=wait)
        if await self.store.retry_job(job.id, run_at, error, attempt=job.attempts):
            log.info(
                "outbox job %s (%s, trace %s) attempt %d failed, retry in %.1fs: %s",
                job.id,
                job.kind,
                job.trace_id or "-",
                job.attempts,
                wait,
                error,
            )
            self._emit(OutboxEvent("retry", job, name, error, wait, duration))
        else:
            self._lost(job, name)

    async def _kill(self, job: Job, name: str, error: str, duration: float = 0.0) -> None:
        if await self.store.kill_job(job.id, error, attempt=job.attempts):
            log.warning(
                "outbox job %s (%s, key %s, trace %s) is dead: %s",
                job.id,
                job.kind,
                job.key,
                job.trace_id or "-",
                error,
            )
            self._emit(OutboxEvent("dead", job, name, error, None, duration))
            if self._on_dead is not None:
                try:
                    await self._on_dead(job, error)
                except Exception:
                    log.exception("outbox on_dead callback failed for job %s", job.id)
        else:
            self._lost(job, name)

    async def _release(self, job: Job, name: str) -> None:
        try:
            released = await self.store.retry_job(
                job.id, self._clock(), "interrupted: the runner stopped", attempt=job.attempts
            )
        except Exception:
            log.exception("outbox job %s: could not release it; its lease will expire", job.id)
            return
        if released:
            self._emit(OutboxEvent("released", job, name))

    def _lost(self, job: Job, name: str) -> None:
        log.warning(
            "outbox job %s (%s): lease lost before its outcome was recorded; another runner"
            " holds it now",
            job.id,
            job.kind,
        )
        self._emit(OutboxEvent("lease_lost", job, name))

    async def _keep_leases(self) -> None:
        """Renew the lease of every running job each third of a lease: a job claimed just
        after one round is renewed by the next but one, within two thirds of its lease.
        One task for every job, not one per job (a task group per job cost more CPU than
        some jobs' own work)."""
        interval = self.lease.total_seconds() / 3
        while True:
            await anyio.sleep(interval)
            for job, name in list(self._running.values()):
                try:
                    held = await self.store.renew_lease(job.id, job.attempts, self.lease)
                except Exception:
                    log.exception("outbox job %s: lease renewal failed; will try again",
                                  job.id)
                    continue
                if not held and self._running.pop(job.id, None) is not None:
                    self._lost(job, name)

    def _emit(self, event: OutboxEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:
            log.exception("outbox on_event callback failed for %s", event.kind)
