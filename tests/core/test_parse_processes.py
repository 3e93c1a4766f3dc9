"""Worker processes for CPU-bound work (``casebridge.processes``): the call runs in another
process, its exception comes back, a dead worker fails only its own call, and with no
processes the work runs in a thread. Standard-library functions only: a worker imports what
it runs, and these need nothing of the test's own modules."""

from __future__ import annotations

import os
import pickle
from datetime import UTC, datetime

import anyio
import pytest
from casebridge.config import BridgeSection
from casebridge.model import Attachment, Message, RawInbound
from casebridge.processes import Processes, WorkerDied, default_processes

pytestmark = pytest.mark.anyio


async def test_a_call_runs_in_another_process_and_returns_its_result() -> None:
    processes = Processes(1)
    try:
        assert await processes.run(os.getpid) != os.getpid()
        assert await processes.run(divmod, 17, 5) == (3, 2)
    finally:
        await processes.aclose()
    await processes.aclose()  # twice: nothing left to stop


async def test_the_functions_exception_is_raised_here() -> None:
    with pytest.raises(ValueError, match="invalid literal"):
        await Processes(1).run(int, "not a number")


async def test_a_dead_worker_fails_its_call_and_the_next_call_gets_a_new_one() -> None:
    processes = Processes(1)
    first = await processes.run(os.getpid)
    with pytest.raises(WorkerDied, match="ended mid-call"):
        await processes.run(os._exit, 3)
    assert await processes.run(os.getpid) not in (first, os.getpid())


async def test_no_processes_means_a_worker_thread_of_this_process() -> None:
    assert await Processes(0).run(os.getpid) == os.getpid()
    with pytest.raises(ValueError):
        Processes(-1)
    with pytest.raises(ValueError, match="parse_processes"):
        BridgeSection(parse_processes=-1)


def test_the_default_leaves_the_event_loops_core_to_it() -> None:
    cores = len(os.sched_getaffinity(0))
    assert default_processes() == max(0, min(cores - 1, 4))


def test_messages_and_raw_inbounds_cross_to_a_worker_and_back() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    message = Message(id="m1", channel="email", direction="inbound", author="customer",
                      external_id="x@y", sender="ann@example.com", recipients=("a@b",),
                      text="hi", sent_at=now, received_at=now, meta={"session_hint": "s1"},
                      attachments=(Attachment("a.pdf", "application/pdf", 3, "00", "ab/00"),))
    raw = RawInbound(channel="email", payload=b"\x00\xff", fields={"to": "a@b"}, peer="p")
    for value in (message, raw):
        copy = pickle.loads(pickle.dumps(value))
        assert copy == value
    assert pickle.loads(pickle.dumps(message)).meta["session_hint"] == "s1"
    with pytest.raises(TypeError):  # still read-only after the trip
        pickle.loads(pickle.dumps(raw)).fields["to"] = "c@d"  # type: ignore[index]


async def test_a_cancelled_call_takes_its_worker_with_it_and_the_next_call_works() -> None:
    import time

    processes = Processes(1)
    try:
        first = await processes.run(os.getpid)
        with anyio.move_on_after(0.2):
            await processes.run(time.sleep, 30)
        assert await processes.run(os.getpid) not in (first, os.getpid())
    finally:
        await processes.aclose()


async def test_what_the_called_code_prints_does_not_reach_the_answer() -> None:
    processes = Processes(1)
    try:
        assert await processes.run(print, "noise on stdout") is None
        assert await processes.run(divmod, 7, 2) == (3, 1)
    finally:
        await processes.aclose()


async def test_calls_queue_in_one_workers_pipe_and_each_gets_its_own_answer() -> None:
    processes = Processes(1)
    results: dict[int, tuple[int, int]] = {}
    pids: set[int] = set()

    async def call(n: int) -> None:
        results[n] = await processes.run(divmod, n, 7)
        pids.add(await processes.run(os.getpid))

    try:
        async with anyio.create_task_group() as tg:
            for n in range(40):
                tg.start_soon(call, n)
    finally:
        await processes.aclose()
    assert results == {n: divmod(n, 7) for n in range(40)}
    assert len(pids) == 1  # one worker took them all, DEPTH at a time


async def test_calls_queued_behind_one_that_kills_its_worker_run_on_a_new_one() -> None:
    import time

    processes = Processes(1)
    outcomes: dict[str, object] = {}

    async def call(name: str, fn, *args) -> None:  # type: ignore[no-untyped-def]
        try:
            outcomes[name] = await processes.run(fn, *args)
        except WorkerDied as exc:
            outcomes[name] = exc

    try:
        first = await processes.run(os.getpid)
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "slow", time.sleep, 0.3)
            await anyio.sleep(0.05)
            tg.start_soon(call, "exit", os._exit, 3)
            await anyio.sleep(0.05)
            tg.start_soon(call, "after", os.getpid)
    finally:
        await processes.aclose()
    assert outcomes["slow"] is None
    assert isinstance(outcomes["exit"], WorkerDied)
    assert outcomes["after"] not in (first, os.getpid())  # ran, on the replacement


async def test_a_call_cancelled_while_queued_leaves_the_worker_and_the_others_alone() -> None:
    import time

    processes = Processes(1)
    try:
        first = await processes.run(os.getpid)
        async with anyio.create_task_group() as tg:
            tg.start_soon(processes.run, time.sleep, 0.3)
            await anyio.sleep(0.05)
            with anyio.move_on_after(0.05):
                await processes.run(divmod, 1, 1)  # queued behind the sleep, then cancelled
        assert await processes.run(os.getpid) == first
    finally:
        await processes.aclose()


async def test_bytes_that_are_not_an_answer_end_the_worker_and_fail_its_call() -> None:
    processes = Processes(1)
    try:
        first = await processes.run(os.getpid)
        with pytest.raises(WorkerDied), anyio.fail_after(10):
            # Straight to the pipe, past the worker's own framing: not an answer.
            await processes.run(os.write, 1, b"x" * 64)
        assert await processes.run(os.getpid) not in (first, os.getpid())
    finally:
        await processes.aclose()
