"""Full-sync transactions committed together (``store.sqlite.group_commit``): the ones
queued during a commit go in the next group, and the process's other transactions give way
to them for at most ``GIVE_WAY`` groups."""

from __future__ import annotations

import anyio
import pytest
from casebridge.store.sqlite.group_commit import GIVE_WAY, GroupCommit, Pending

pytestmark = pytest.mark.anyio


class Committer:
    """A commit_group that holds each group until the test lets it go."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.go = anyio.Semaphore(0)

    async def __call__(self, group: list[Pending]) -> None:
        await self.go.acquire()
        for pending in group:
            pending.result = pending.fn(None)  # type: ignore[arg-type]
            pending.finished = True
        self.groups.append([p.result for p in group])


def tx(name: str):  # type: ignore[no-untyped-def]
    return lambda conn: name


async def test_transactions_queued_during_a_commit_go_together() -> None:
    committer = Committer()
    commits = GroupCommit(committer)
    results: list[str] = []

    async def run(name: str) -> None:
        results.append(await commits.run(tx(name)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "a")
        await anyio.sleep(0.01)
        for name in "bcd":
            tg.start_soon(run, name)
        await anyio.sleep(0.01)
        assert commits.busy
        committer.go.release()
        committer.go.release()
    assert committer.groups == [["a"], ["b", "c", "d"]]
    assert sorted(results) == ["a", "b", "c", "d"] and not commits.busy


async def test_others_give_way_to_queued_accepts_for_a_bounded_number_of_groups() -> None:
    committer = Committer()
    commits = GroupCommit(committer)
    gave_way = anyio.Event()
    feeding = True

    async def accepts() -> None:  # a client that always has the next one queued
        n = 0
        while feeding:
            n += 1
            await commits.run(tx(f"accept {n}"))

    async def outbox() -> None:
        await commits.give_way()
        gave_way.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(accepts)
        tg.start_soon(accepts)
        await anyio.sleep(0.01)
        tg.start_soon(outbox)
        for _ in range(GIVE_WAY):
            await anyio.sleep(0.01)
            assert not gave_way.is_set()  # accepts are queued: it waits...
            committer.go.release()
        with anyio.fail_after(5):
            await gave_way.wait()  # ...but not longer than GIVE_WAY groups
        feeding = False
        for _ in range(4):
            committer.go.release()
    assert 1 <= len(committer.groups) - GIVE_WAY <= 4


async def test_nothing_queued_means_no_wait() -> None:
    commits = GroupCommit(Committer())
    with anyio.fail_after(1):
        await commits.give_way()
