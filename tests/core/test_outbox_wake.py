"""Targeted wake-ups: a finished job wakes one idle loop per follow-up (and one for its order
key), not every idle loop, and no wake-up is lost."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from casebridge.backoff import BackoffPolicy
from casebridge.outbox import Outbox
from casebridge.store import Job, NewJob
from casebridge.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


class Counting(SqliteStore):
    claims = 0

    async def claim_job(self, worker_id, lease, kinds=None):
        type(self).claims += 1
        return await super().claim_job(worker_id, lease, kinds)


def runner(store: SqliteStore, handlers: dict, workers: int) -> Outbox:
    # An hour between polls: only wake-ups can move the work along.
    return Outbox(
        store,
        handlers,
        workers=workers,
        lease=timedelta(seconds=60),
        policy=BackoffPolicy(),
        worker_id="w",
        poll_interval=3600,
    )


@pytest.mark.parametrize("fan_out", [1, 3])
async def test_chains_of_follow_ups_finish_with_few_claims(tmp_path: Path, fan_out: int) -> None:
    done: list[str] = []
    finished = anyio.Event()
    depth = 12
    expected = sum(fan_out**level for level in range(depth if fan_out == 1 else 4))

    async def handle(job: Job) -> list[NewJob]:
        done.append(job.key)
        level = job.payload["level"]
        if len(set(done)) == expected:
            finished.set()
        if (fan_out == 1 and level + 1 >= depth) or (fan_out > 1 and level + 1 >= 4):
            return []
        return [NewJob("step", {"level": level + 1}, key=f"{job.key}.{n}") for n in range(fan_out)]

    Counting.claims = 0
    async with Counting(tmp_path / "casebridge.db") as store:
        box = runner(store, {"step": handle}, workers=16)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                await tg.start(box.run)
                await store.enqueue([NewJob("step", {"level": 0}, key="root")])
                box.wake()
                await finished.wait()
                tg.cancel_scope.cancel()
    # (The last job may run again: shutdown interrupts it before its outcome is stored.)
    assert len(set(done)) == expected
    # Each job: its own claim, one for each wake-up its finish sends; plus each loop's
    # first look. A broadcast would cost up to 16 claims per finished job.
    assert Counting.claims <= 16 + expected * (fan_out + 4), Counting.claims


async def test_jobs_of_one_order_key_run_in_turn_without_polling(tmp_path: Path) -> None:
    order: list[int] = []
    all_done = anyio.Event()

    async def handle(job: Job) -> None:
        order.append(job.payload["n"])
        await anyio.sleep(0.01)
        if len(order) == 10:
            all_done.set()

    async with SqliteStore(tmp_path / "casebridge.db") as store:
        box = runner(store, {"step": handle}, workers=8)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                await tg.start(box.run)
                await store.enqueue(
                    [NewJob("step", {"n": n}, key=f"k{n}", order_key="one") for n in range(10)]
                )
                box.wake()
                await all_done.wait()
                tg.cancel_scope.cancel()
    assert order == list(range(10))
