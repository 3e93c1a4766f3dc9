"""The job queue (:class:`~casebridge.store.JobQueue`) on every backend: idempotent enqueue,
atomic claims with leases, order keys, outcomes, dead letters and replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from casebridge.store import Job, JobQueue, NewJob, RecordNotFound
from support.stores import T0, FakeClock

pytestmark = pytest.mark.anyio

LEASE = timedelta(seconds=30)


def job(key: str, **kw: object) -> NewJob:
    return NewJob(kind=str(kw.pop("kind", "work")), payload={"key": key}, key=key, **kw)  # type: ignore[arg-type]


async def claim(store: JobQueue, worker: str = "w1", **kw: object) -> Job | None:
    return await store.claim_job(worker, LEASE, **kw)  # type: ignore[arg-type]


async def test_enqueue_is_idempotent_by_key(store: JobQueue, clock: FakeClock) -> None:
    await store.enqueue([job("a"), job("b", trace_id="t-1", max_attempts=3)])
    await store.enqueue([job("a"), NewJob("other", {"changed": True}, key="b")])
    await store.enqueue([])
    jobs = await store.list_jobs()
    assert [(j.key, j.kind, j.payload) for j in jobs] == [
        ("b", "work", {"key": "b"}),
        ("a", "work", {"key": "a"}),
    ]
    b = jobs[0]
    assert (b.state, b.attempts, b.max_attempts, b.trace_id) == ("pending", 0, 3, "t-1")
    assert b.run_at == b.created_at == b.updated_at == clock.now
    assert (b.lease_until, b.worker_id, b.last_error) == (None, "", "")
    assert await store.job_counts() == {"pending": 2, "running": 0, "done": 0, "dead": 0}


def test_new_job_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="key"):
        NewJob("work", {}, key="")
    with pytest.raises(ValueError, match="kind"):
        NewJob("", {}, key="k")
    with pytest.raises(ValueError, match="JSON"):
        NewJob("work", {"when": datetime.now(UTC)}, key="k")
    with pytest.raises(ValueError, match="timezone-aware"):
        NewJob("work", {}, key="k", run_at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="max_attempts"):
        NewJob("work", {}, key="k", max_attempts=0)


async def test_claim_takes_due_jobs_oldest_first(store: JobQueue, clock: FakeClock) -> None:
    await store.enqueue(
        [job("later", run_at=T0 + timedelta(minutes=1)), job("first"), job("second")]
    )
    got = await claim(store)
    assert got is not None
    assert (got.key, got.state, got.attempts, got.worker_id) == ("first", "running", 1, "w1")
    assert got.lease_until == clock.now + LEASE
    second = await claim(store)
    assert second is not None and second.key == "second"
    assert await claim(store) is None
    await store.complete_job(got.id)
    await store.complete_job(second.id)
    clock.advance(minutes=1)
    assert (await claim(store)).key == "later"  # type: ignore[union-attr]


async def test_claim_filters_by_kind(store: JobQueue) -> None:
    await store.enqueue([job("a", kind="email"), job("b", kind="sms")])
    assert (await claim(store, kinds=["sms"])).key == "b"  # type: ignore[union-attr]
    assert await claim(store, kinds=["sms"]) is None
    assert await claim(store, kinds=[]) is None
    assert (await claim(store, kinds=["email", "crm"])).key == "a"  # type: ignore[union-attr]


async def test_order_key_runs_one_at_a_time_in_order(store: JobQueue) -> None:
    await store.enqueue(
        [job("s1-a", order_key="s1"), job("s1-b", order_key="s1"), job("s2-a", order_key="s2")]
    )
    first = await claim(store)
    assert first is not None and first.key == "s1-a"
    assert (await claim(store)).key == "s2-a"  # type: ignore[union-attr]
    assert await claim(store) is None  # s1-b waits for s1-a
    await store.retry_job(first.id, T0, "try again", attempt=first.attempts)
    again = await claim(store)
    assert again is not None and again.key == "s1-a"  # a retried job keeps its place
    await store.complete_job(again.id, attempt=again.attempts)
    assert (await claim(store)).key == "s1-b"  # type: ignore[union-attr]


async def test_a_retry_in_the_future_holds_back_its_order_key(
    store: JobQueue, clock: FakeClock
) -> None:
    await store.enqueue([job("a", order_key="s1"), job("b", order_key="s1"), job("c")])
    a = await claim(store)
    assert a is not None
    await store.retry_job(a.id, T0 + timedelta(minutes=5), "later")
    c = await claim(store)
    assert c is not None and c.key == "c"
    assert await claim(store) is None
    assert await store.next_run_at() == T0 + LEASE
    await store.complete_job(c.id)
    # "b" is due but waits behind "a": the earliest moment anything can run is a's retry.
    assert await store.next_run_at() == T0 + timedelta(minutes=5)


async def test_a_dead_job_no_longer_blocks_its_order_key(store: JobQueue) -> None:
    await store.enqueue([job("a", order_key="s1"), job("b", order_key="s1")])
    a = await claim(store)
    assert a is not None
    assert await store.kill_job(a.id, "PermanentError: refused", attempt=a.attempts)
    b = await claim(store)
    assert b is not None and b.key == "b"
    # Replaying the dead one while a later job of its order key runs must not run both.
    assert await store.replay_dead([a.id]) == 1
    assert await claim(store) is None
    await store.complete_job(b.id, attempt=b.attempts)
    replayed = await claim(store)
    assert replayed is not None and replayed.key == "a" and replayed.attempts == 1


async def test_an_expired_lease_is_reclaimed_and_fences_the_old_worker(
    store: JobQueue, clock: FakeClock
) -> None:
    await store.enqueue([job("a", order_key="s1"), job("b", order_key="s1")])
    first = await claim(store, "dead-worker")
    assert first is not None
    clock.advance(seconds=29)
    assert await claim(store, "w2") is None
    clock.advance(seconds=1)
    second = await claim(store, "w2")
    assert second is not None and second.id == first.id
    assert (second.attempts, second.worker_id) == (2, "w2")
    assert "dead-worker" in second.last_error and "lease expired" in second.last_error
    assert not await store.complete_job(first.id, [job("from-the-dead")], attempt=1)
    assert not await store.renew_lease(first.id, 1, LEASE)
    assert await store.renew_lease(second.id, 2, timedelta(minutes=10))
    clock.advance(minutes=5)
    assert await claim(store, "w3") is None
    assert await store.complete_job(second.id, attempt=2)
    assert [j.key for j in await store.list_jobs()] == ["b", "a"]


async def test_complete_job_enqueues_follow_ups_atomically(store: JobQueue) -> None:
    await store.enqueue([job("a")])
    a = await claim(store)
    assert a is not None
    assert await store.complete_job(a.id, [job("a.1"), job("a.2"), job("a")])
    done = await store.get_job(a.id)
    assert done is not None and (done.state, done.lease_until) == ("done", None)
    assert [j.key for j in await store.list_jobs("pending")] == ["a.2", "a.1"]
    assert not await store.complete_job(a.id)
    with pytest.raises(RecordNotFound):
        await store.complete_job(999)


async def test_retry_kill_and_replay(store: JobQueue, clock: FakeClock) -> None:
    await store.enqueue([job("a"), job("b")])
    a = await claim(store)
    assert a is not None
    assert await store.retry_job(a.id, T0 + timedelta(seconds=40), "TransientError: 503")
    retried = await store.get_job(a.id)
    assert retried is not None
    assert (retried.state, retried.attempts, retried.last_error) == (
        "pending",
        1,
        "TransientError: 503",
    )
    assert (retried.run_at, retried.lease_until, retried.worker_id) == (
        T0 + timedelta(seconds=40),
        None,
        "",
    )
    assert await store.kill_job(a.id, "x" * 10_000)
    b = await claim(store)
    assert b is not None
    assert await store.kill_job(b.id, "PermanentError: no", attempt=b.attempts)
    dead = await store.list_jobs("dead")
    assert {j.key for j in dead} == {"a", "b"}
    assert len((await store.get_job(a.id)).last_error) <= 4000  # type: ignore[union-attr]
    assert not await store.kill_job(a.id, "again")

    clock.advance(minutes=1)
    assert await store.replay_dead([b.id, b.id, 12345]) == 1
    assert await store.replay_dead() == 1
    assert await store.replay_dead() == 0
    replayed = await store.get_job(b.id)
    assert replayed is not None
    assert (replayed.state, replayed.attempts, replayed.run_at) == ("pending", 0, clock.now)
    assert replayed.last_error == "PermanentError: no"
    assert await store.job_counts() == {"pending": 2, "running": 0, "done": 0, "dead": 0}


async def test_next_run_at(store: JobQueue, clock: FakeClock) -> None:
    assert await store.next_run_at() is None
    await store.enqueue([job("a", run_at=T0 + timedelta(minutes=3))])
    assert await store.next_run_at() == T0 + timedelta(minutes=3)
    await store.enqueue([job("b")])
    b = await claim(store)
    assert b is not None
    assert await store.next_run_at() == T0 + LEASE
    await store.complete_job(b.id)
    assert await store.next_run_at() == T0 + timedelta(minutes=3)
    await store.enqueue([job("c", kind="other", run_at=T0 + timedelta(minutes=1))])
    assert await store.next_run_at() == T0 + timedelta(minutes=1)
    assert await store.next_run_at(["work"]) == T0 + timedelta(minutes=3)
    assert await store.next_run_at(["nothing"]) is None
    assert await store.next_run_at([]) is None


async def test_list_jobs_checks_the_state(store: JobQueue) -> None:
    with pytest.raises(ValueError, match="pending, running, done, dead"):
        await store.list_jobs("finished")  # type: ignore[arg-type]


async def test_claim_needs_a_positive_lease(store: JobQueue) -> None:
    with pytest.raises(ValueError, match="lease"):
        await store.claim_job("w", timedelta(0))


async def test_complete_and_claim_takes_the_next_job_of_the_same_key_first(
    store: JobQueue, clock: FakeClock
) -> None:
    await store.enqueue([job("first", order_key="s-1"), job("waiting")])
    first = await claim(store)
    assert first is not None and first.key == "first"
    # Done, with a follow-up of the same order key: that follow-up is claimed in the same
    # transaction, ahead of the job that waited longer.
    done, taken = await store.complete_and_claim(
        first.id, [job("follow", order_key="s-1")], attempt=first.attempts, worker_id="w1",
        lease=LEASE, kinds=["work"], order_key="s-1")
    assert done and taken is not None
    assert (taken.key, taken.state, taken.worker_id, taken.attempts) == (
        "follow", "running", "w1", 1)
    assert taken.lease_until == clock.now + LEASE
    assert (await store.get_job(first.id)).state == "done"  # type: ignore[union-attr]
    # Nothing of the key is left: the oldest due job, as claim_job takes it.
    done, taken = await store.complete_and_claim(
        taken.id, attempt=taken.attempts, worker_id="w2", lease=LEASE, order_key="s-1")
    assert done and taken is not None and (taken.key, taken.worker_id) == ("waiting", "w2")
    done, taken = await store.complete_and_claim(
        taken.id, attempt=taken.attempts, worker_id="w2", lease=LEASE)
    assert done and taken is None
    assert await store.job_counts() == {"pending": 0, "running": 0, "done": 3, "dead": 0}


async def test_complete_and_claim_keeps_kinds_due_times_and_fences(
    store: JobQueue, clock: FakeClock
) -> None:
    await store.enqueue([job("a1", order_key="a"), job("other", kind="else")])
    a1 = await claim(store, kinds=["work"])
    assert a1 is not None and a1.key == "a1"
    # The key's next job is not due yet, and one of a kind the worker does not run is
    # never taken: the oldest due job of the worker's kinds instead.
    await store.enqueue([job("b1")])
    done, taken = await store.complete_and_claim(
        a1.id, [job("a2", order_key="a", run_at=T0 + timedelta(minutes=5))],
        attempt=a1.attempts, worker_id="w1", lease=LEASE, kinds=["work"], order_key="a")
    assert done and taken is not None and taken.key == "b1"
    # A completion whose claim no longer holds the job is refused, and the claim still
    # happens: the worker is free either way.
    clock.advance(seconds=LEASE.total_seconds() + 1)
    stolen = await claim(store, "w2", kinds=["work"])
    assert stolen is not None and stolen.key == "b1"
    done, taken = await store.complete_and_claim(
        taken.id, attempt=taken.attempts, worker_id="w1", lease=LEASE, kinds=["else"])
    assert not done and taken is not None and taken.key == "other"
    done, taken = await store.complete_and_claim(
        taken.id, attempt=taken.attempts, worker_id="w1", lease=LEASE, kinds=[])
    assert done and taken is None
    with pytest.raises(ValueError, match="lease"):
        await store.complete_and_claim(stolen.id, worker_id="w1", lease=timedelta(0))
    with pytest.raises(RecordNotFound):
        await store.complete_and_claim(999_999, worker_id="w1", lease=LEASE)
