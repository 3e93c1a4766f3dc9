"""PostgreSQL specifics: NOTIFY wakes another process's idle outbox at once, and concurrent
claimers on one database take each job once, in per-session order."""

from __future__ import annotations

import time
from datetime import timedelta

import anyio
from casebridge.backoff import BackoffPolicy
from casebridge.outbox import Outbox
from casebridge.pgstore import PgStore
from casebridge.store import Job, NewJob
from support.postgres import PostgresServer

POLICY = BackoffPolicy(base=10, factor=2, cap=300, jitter=1, max_attempts=4)


async def test_enqueue_elsewhere_wakes_an_idle_outbox(postgres_server: PostgresServer) -> None:
    url = postgres_server.new_database("notify")
    done = anyio.Event()
    handled_at: list[float] = []

    async def handle(job: Job) -> None:
        handled_at.append(time.monotonic())
        done.set()

    async with PgStore(url) as runner, PgStore(url) as other:
        # A poll interval far beyond the test's patience: only the notification can wake it.
        box = Outbox(runner, {"work": handle}, workers=2, lease=timedelta(seconds=30),
                     policy=POLICY, worker_id="r1", poll_interval=120)
        async with anyio.create_task_group() as tg:
            await tg.start(box.run)
            await anyio.sleep(0.5)  # workers idle, listener connected
            sent = time.monotonic()
            await other.enqueue([NewJob("work", {}, key="w1")])
            with anyio.fail_after(20):
                await done.wait()
            tg.cancel_scope.cancel()
    assert handled_at[0] - sent < 10


async def test_a_notification_says_how_many_workers_to_wake(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.new_database("notify_count")
    woken: list[int | None] = []
    arrived = [anyio.Event(), anyio.Event()]

    def wake(count: int | None) -> None:
        woken.append(count)
        arrived[min(len(woken), 2) - 1].set()

    async with PgStore(url) as listener, PgStore(url) as other, anyio.create_task_group() as tg:
        tg.start_soon(listener.listen_jobs, wake)
        with anyio.fail_after(20):
            await arrived[0].wait()  # connected: the first wake-up is for all (None)
            await other.enqueue([NewJob("work", {}, key=f"j{n}") for n in range(3)])
            await arrived[1].wait()
        tg.cancel_scope.cancel()
    # Three jobs wake three workers in each runner, not every idle one.
    assert woken == [None, 3]


async def test_concurrent_claimers_take_each_job_once_in_order(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.new_database("claimers")
    sessions, per_session = 8, 6
    jobs = [NewJob("work", {"s": s, "n": n}, key=f"{s}-{n}", order_key=f"s{s}")
            for n in range(per_session) for s in range(sessions)]
    seen: list[tuple[int, int]] = []
    running: set[str] = set()
    overlaps: list[str] = []

    async def handle(job: Job) -> None:
        if job.order_key in running:
            overlaps.append(job.order_key)
        running.add(job.order_key)
        await anyio.sleep(0.005)
        running.discard(job.order_key)
        seen.append((job.payload["s"], job.payload["n"]))

    async with PgStore(url) as one, PgStore(url) as two:
        await one.enqueue(jobs)
        boxes = [Outbox(store, {"work": handle}, workers=3, lease=timedelta(seconds=30),
                        policy=POLICY, worker_id=f"r{i}") for i, store in enumerate((one, two))]
        with anyio.fail_after(120):
            async with anyio.create_task_group() as tg:
                for box in boxes:
                    tg.start_soon(box.drain)
        counts = await one.job_counts()
    assert sorted(seen) == sorted((j.payload["s"], j.payload["n"]) for j in jobs)
    assert counts["done"] == len(jobs)
    assert overlaps == []
    for s in range(sessions):
        assert [n for t, n in seen if t == s] == list(range(per_session))


async def test_replays_beside_two_runners_never_overlap_a_session(
    postgres_server: PostgresServer,
) -> None:
    """Kills, replays and follow-ups from several connections at once: no deadlock, no two
    jobs of one order key running together, every job done in the end."""
    from casebridge.errors import PermanentError

    url = postgres_server.new_database("replays")
    jobs = [NewJob("work", {"n": n}, key=f"j{n}", order_key=f"s{n % 5}") for n in range(60)]
    failed: set[str] = set()
    running: set[str] = set()
    overlaps: list[str] = []

    async def handle(job: Job) -> list[NewJob]:
        if job.order_key in running:
            overlaps.append(job.order_key)
        running.add(job.order_key)
        try:
            await anyio.sleep(0.002)
            if job.payload["n"] % 4 == 0 and job.key not in failed:
                failed.add(job.key)
                raise PermanentError("first attempt fails")
        finally:
            running.discard(job.order_key)
        if "follow" in job.payload:
            return []
        return [NewJob("work", {"n": -1, "follow": True}, key=f"f-{job.key}",
                       order_key=job.order_key)]

    async with PgStore(url) as one, PgStore(url) as two, PgStore(url) as admin:
        await one.enqueue(jobs)
        boxes = [Outbox(store, {"work": handle}, workers=3, lease=timedelta(seconds=30),
                        policy=POLICY, worker_id=f"r{i}") for i, store in enumerate((one, two))]
        with anyio.fail_after(180):
            while (await admin.job_counts())["done"] < 2 * len(jobs):
                async with anyio.create_task_group() as tg:
                    for box in boxes:
                        tg.start_soon(box.drain)
                    for _ in range(5):
                        await admin.replay_dead()
                        await anyio.sleep(0.01)
                await admin.replay_dead()
        counts = await admin.job_counts()
    assert len(failed) == 15  # every fourth job died once and was replayed
    assert overlaps == []
    assert counts == {"pending": 0, "running": 0, "done": 2 * len(jobs), "dead": 0}
