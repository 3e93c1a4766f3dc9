"""The outbox runner: handlers, follow-ups, order keys under concurrency, retries with
backoff and Retry-After, dead letters, replay, lease renewal, wake-ups and shutdown."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest
from casebridge.backoff import BackoffPolicy
from casebridge.errors import PermanentError, TransientError
from casebridge.outbox import Handler, Outbox, OutboxEvent
from casebridge.store import Job, NewJob
from casebridge.store.sqlite import SqliteStore
from support.stores import T0, FakeClock

pytestmark = pytest.mark.anyio

LEASE = timedelta(seconds=60)
# base 10s doubling; with the fixed draw below, a delay is exactly 3/4 of its envelope.
POLICY = BackoffPolicy(base=10, factor=2, cap=300, jitter=1, max_attempts=4)


class FixedRandom:
    def random(self) -> float:
        return 0.25


def outbox(
    store: SqliteStore,
    clock: FakeClock,
    handlers: dict[str, Handler],
    events: list[OutboxEvent] | None = None,
    **kw: object,
) -> Outbox:
    options: dict[str, object] = {
        "workers": 2,
        "lease": LEASE,
        "policy": POLICY,
        "worker_id": "test",
        "clock": clock,
        "rng": FixedRandom(),
        "on_event": None if events is None else events.append,
    }
    options.update(kw)
    return Outbox(store, handlers, **options)  # type: ignore[arg-type]


def failing(exc: Exception, times: int, done: list[str]) -> Handler:
    calls = {"n": 0}

    async def handle(job: Job) -> None:
        calls["n"] += 1
        if calls["n"] <= times:
            raise exc
        done.append(job.key)

    return handle


async def test_handlers_run_and_follow_ups_inherit_the_trace(
    store: SqliteStore, clock: FakeClock
) -> None:
    seen: list[tuple[str, str]] = []

    async def first(job: Job) -> Sequence[NewJob]:
        seen.append((job.key, job.trace_id))
        return [
            NewJob("second", {"from": job.key}, key=f"{job.key}.next"),
            NewJob("second", {"from": job.key}, key=f"{job.key}.own", trace_id="own"),
        ]

    async def second(job: Job) -> None:
        seen.append((job.key, job.trace_id))

    await store.enqueue([NewJob("first", {}, key="a", trace_id="trace-a")])
    events: list[OutboxEvent] = []
    box = outbox(store, clock, {"first": first, "second": second}, events)
    assert await box.drain(timeout=10) == 3
    assert sorted(seen) == [("a", "trace-a"), ("a.next", "trace-a"), ("a.own", "own")]
    assert await store.job_counts() == {"pending": 0, "running": 0, "done": 3, "dead": 0}
    assert [e.kind for e in events].count("done") == 3
    assert await box.drain(timeout=10) == 0


async def test_order_keys_never_overlap_and_keep_enqueue_order(
    store: SqliteStore, clock: FakeClock
) -> None:
    running: dict[str, int] = defaultdict(int)
    overlaps: list[str] = []
    order: dict[str, list[int]] = defaultdict(list)
    side_by_side = anyio.Event()
    holding = {"free-0": False}

    async def handle(job: Job) -> None:
        group = job.order_key or "none"
        running[group] += 1
        if job.order_key and running[group] > 1:
            overlaps.append(job.key)
        order[group].append(job.payload["n"])
        if holding["free-0"]:
            side_by_side.set()
        if job.key == "free-0":
            # Hold one worker until another starts a job: proof the workers run in parallel.
            holding["free-0"] = True
            with anyio.fail_after(10):
                await side_by_side.wait()
            holding["free-0"] = False
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        running[group] -= 1

    jobs = []
    for n in range(12):
        for group in ("s1", "s2", "s3"):
            jobs.append(NewJob("work", {"n": n}, key=f"{group}-{n}", order_key=group))
        jobs.append(NewJob("work", {"n": n}, key=f"free-{n}"))
    await store.enqueue(jobs)
    assert await outbox(store, clock, {"work": handle}, workers=6).drain(timeout=30) == 48
    assert overlaps == []
    for group in ("s1", "s2", "s3"):
        assert order[group] == list(range(12))
    assert sorted(order["none"]) == list(range(12))
    assert side_by_side.is_set()


async def test_a_transient_error_is_retried_after_backoff(
    store: SqliteStore, clock: FakeClock
) -> None:
    done: list[str] = []
    events: list[OutboxEvent] = []
    box = outbox(store, clock, {"work": failing(TransientError("503 from CRM"), 2, done)}, events)
    await store.enqueue([NewJob("work", {}, key="a")])

    assert await box.drain(timeout=10) == 1
    job = (await store.list_jobs())[0]
    assert (job.state, job.attempts, job.last_error) == (
        "pending",
        1,
        "TransientError: 503 from CRM",
    )
    assert job.run_at == T0 + timedelta(seconds=7.5)  # 3/4 of the 10 s envelope
    assert events[-1].kind == "retry" and events[-1].delay == 7.5

    clock.advance(seconds=7)
    assert await box.drain(timeout=10) == 0
    clock.advance(seconds=1)
    assert await box.drain(timeout=10) == 1
    job = (await store.list_jobs())[0]
    assert job.run_at == clock.now + timedelta(seconds=15)  # second envelope: 20 s

    clock.advance(seconds=15)
    assert await box.drain(timeout=10) == 1
    job = (await store.list_jobs())[0]
    assert (job.state, job.attempts, done) == ("done", 3, ["a"])


async def test_retry_after_is_a_minimum(store: SqliteStore, clock: FakeClock) -> None:
    done: list[str] = []
    handlers = {
        "slow": failing(TransientError("429", retry_after=120), 1, done),
        "quick": failing(TransientError("429", retry_after=1), 1, done),
    }
    await store.enqueue([NewJob("slow", {}, key="slow"), NewJob("quick", {}, key="quick")])
    await outbox(store, clock, handlers).drain(timeout=10)
    jobs = {j.key: j for j in await store.list_jobs()}
    assert jobs["slow"].run_at == T0 + timedelta(seconds=120)
    assert jobs["quick"].run_at == T0 + timedelta(seconds=7.5)


async def test_an_unexpected_exception_is_logged_and_retried(
    store: SqliteStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    done: list[str] = []
    await store.enqueue([NewJob("work", {}, key="a", trace_id="t-9")])
    box = outbox(store, clock, {"work": failing(KeyError("missing"), 1, done)})
    with caplog.at_level(logging.ERROR, logger="casebridge.outbox"):
        await box.drain(timeout=10)
    job = (await store.list_jobs())[0]
    assert (job.state, job.last_error) == ("pending", "KeyError: 'missing'")
    record = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert record.exc_info is not None and "t-9" in record.getMessage()


async def test_a_permanent_error_dead_letters_at_once_and_replay_revives(
    store: SqliteStore, clock: FakeClock
) -> None:
    done: list[str] = []
    events: list[OutboxEvent] = []
    box = outbox(
        store, clock, {"work": failing(PermanentError("case type unknown"), 1, done)}, events
    )
    await store.enqueue([NewJob("work", {}, key="a")])
    await box.drain(timeout=10)
    job = (await store.list_jobs("dead"))[0]
    assert (job.attempts, job.last_error) == (1, "PermanentError: case type unknown")
    assert events[-1].kind == "dead"

    assert await store.replay_dead() == 1
    assert await box.drain(timeout=10) == 1
    assert done == ["a"] and (await store.job_counts())["done"] == 1


async def test_the_attempt_budget_ends_in_the_dead_letters(
    store: SqliteStore, clock: FakeClock
) -> None:
    done: list[str] = []
    box = outbox(store, clock, {"work": failing(TransientError("down"), 100, done)})
    await store.enqueue(
        [NewJob("work", {}, key="policy"), NewJob("work", {}, key="own", max_attempts=2)]
    )
    for _ in range(6):
        await box.drain(timeout=10)
        clock.advance(hours=1)
    jobs = {j.key: j for j in await store.list_jobs()}
    assert (jobs["own"].state, jobs["own"].attempts) == ("dead", 2)
    assert (jobs["policy"].state, jobs["policy"].attempts) == ("dead", POLICY.max_attempts)
    assert jobs["policy"].last_error == "TransientError: down (gave up after 4 attempts)"
    assert done == []


async def test_errors_are_truncated(store: SqliteStore, clock: FakeClock) -> None:
    await store.enqueue([NewJob("work", {}, key="a")])
    await outbox(store, clock, {"work": failing(PermanentError("x" * 50_000), 1, [])}).drain(10)
    error = (await store.list_jobs())[0].last_error
    assert len(error) == 2000 and error.startswith("PermanentError: xxx")


async def test_a_bad_handler_result_is_an_error(store: SqliteStore, clock: FakeClock) -> None:
    async def handle(job: Job) -> Sequence[NewJob]:
        return ["not a job"]  # type: ignore[list-item]

    await store.enqueue([NewJob("work", {}, key="a")])
    await outbox(store, clock, {"work": handle}).drain(10)
    job = (await store.list_jobs())[0]
    assert job.state == "pending" and "returned a str" in job.last_error


async def test_a_job_whose_worker_died_on_its_last_attempt_is_dead_unrun(
    store: SqliteStore, clock: FakeClock
) -> None:
    ran: list[str] = []

    async def handle(job: Job) -> None:
        ran.append(job.key)

    await store.enqueue([NewJob("work", {}, key="a", max_attempts=1)])
    assert await store.claim_job("crashed/0", LEASE) is not None
    clock.advance(seconds=61)
    await outbox(store, clock, {"work": handle}).drain(10)
    job = (await store.list_jobs())[0]
    assert job.state == "dead" and ran == []
    assert "crashed/0" in job.last_error and "budget of 1 spent" in job.last_error


async def test_only_kinds_with_a_handler_are_claimed(store: SqliteStore, clock: FakeClock) -> None:
    async def handle(job: Job) -> None:
        return None

    await store.enqueue([NewJob("mine", {}, key="a"), NewJob("theirs", {}, key="b")])
    assert await outbox(store, clock, {"mine": handle}).drain(10) == 1
    assert [j.key for j in await store.list_jobs("pending")] == ["b"]


async def test_a_long_handler_renews_its_lease(tmp_path: Path) -> None:
    renewed = anyio.Event()

    class Watched(SqliteStore):
        async def renew_lease(self, job_id: int, attempt: int, lease: timedelta) -> bool:
            held = await super().renew_lease(job_id, attempt, lease)
            renewed.set()
            return held

    async def handle(job: Job) -> None:
        await renewed.wait()

    async with Watched(tmp_path / "casebridge.db") as store:
        await store.enqueue([NewJob("work", {}, key="a")])
        box = Outbox(
            store,
            {"work": handle},
            lease=timedelta(milliseconds=90),
            policy=POLICY,
            worker_id="w",
            workers=1,
        )
        assert await box.drain(timeout=10) == 1
        job = (await store.list_jobs())[0]
        assert (job.state, job.attempts) == ("done", 1)


async def test_run_wakes_on_demand_and_releases_on_shutdown(
    store: SqliteStore, clock: FakeClock
) -> None:
    started = anyio.Event()
    finished = anyio.Event()

    async def handle(job: Job) -> None:
        if job.key == "forever":
            started.set()
            await anyio.sleep_forever()
        finished.set()

    completed = anyio.Event()

    class Events(list[OutboxEvent]):
        def append(self, event: OutboxEvent) -> None:
            super().append(event)
            if event.kind == "done":
                completed.set()

    events = Events()
    box = outbox(store, clock, {"work": handle}, events, poll_interval=3600)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(box.run)
            await store.enqueue([NewJob("work", {}, key="quick")])
            box.wake()
            await finished.wait()
            # The handler has returned; its completion is recorded right after (store calls
            # may finish without yielding, so do not assume it happened first).
            await completed.wait()
            await store.enqueue([NewJob("work", {}, key="forever")])
            box.wake()
            await started.wait()
            tg.cancel_scope.cancel()
    jobs = {j.key: j for j in await store.list_jobs()}
    assert jobs["quick"].state == "done"
    forever = jobs["forever"]
    assert (forever.state, forever.run_at, forever.lease_until) == ("pending", clock.now, None)
    assert "interrupted" in forever.last_error
    assert events[-1].kind == "released"


async def test_outbox_refuses_bad_settings(store: SqliteStore) -> None:
    with pytest.raises(ValueError, match="handler"):
        Outbox(store, {}, lease=LEASE, policy=POLICY, worker_id="w")
    with pytest.raises(ValueError, match="workers"):
        Outbox(store, {"a": None}, workers=0, lease=LEASE, policy=POLICY, worker_id="w")  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="lease"):
        Outbox(store, {"a": None}, lease=timedelta(0), policy=POLICY, worker_id="w")  # type: ignore[dict-item]
