"""Singleton services: on PostgreSQL exactly one runner runs each, under an advisory lock on
its own connection, and another takes over when the holder's connection goes; on SQLite
(one runner) they simply run."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Callable

import anyio
import psycopg
import pytest
from anyio.abc import TaskStatus
from casebridge import hookimpl
from casebridge.bridge import Bridge
from casebridge.contributions import Service
from casebridge.pgstore.locks import AdvisoryLocks, lock_key_sql
from casebridge.singletons import LocalLocks, run_singleton
from support.bridges import install_jsonl, write_config
from support.plugins import LoopChannel
from support.postgres import PostgresServer

NAME = "test poller"


class Tracker:
    """What singleton bodies ran where: the names running now and the most at once."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.started: list[str] = []
        self.stopped: list[str] = []
        self.most = 0

    def service(self, who: str) -> Service:
        async def run(*, task_status: TaskStatus[None]) -> None:
            task_status.started()
            self.running.add(who)
            self.started.append(who)
            self.most = max(self.most, len(self.running))
            try:
                await anyio.sleep_forever()
            finally:
                self.running.discard(who)
                self.stopped.append(who)

        return Service(NAME, run, singleton=True)


async def wait_until(check: Callable[[], bool], limit: float = 20) -> float:
    """Seconds until ``check`` held; fails after ``limit`` seconds."""
    began = time.monotonic()
    with anyio.fail_after(limit):
        for _ in itertools.count():
            if check():
                break
            await anyio.sleep(0.02)
    return time.monotonic() - began


def fast_locks(url: str) -> AdvisoryLocks:
    return AdvisoryLocks(url, retry_seconds=0.2, check_seconds=0.3)


async def test_two_holders_one_runs_and_the_other_takes_over_when_it_closes(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.new_database("singleton")
    tracker = Tracker()
    async with anyio.create_task_group() as tg:
        scopes: dict[str, anyio.CancelScope] = {}
        for who in ("a", "b"):
            scopes[who] = anyio.CancelScope()

            async def runner(who: str = who) -> None:
                with scopes[who]:
                    await run_singleton(tracker.service(who), fast_locks(url))

            tg.start_soon(runner)
        await wait_until(lambda: bool(tracker.running))
        await anyio.sleep(1.0)  # several retries of the waiter
        [holder] = tracker.running
        assert tracker.started == [holder]
        # The holder's runner stops: its connection closes, the lock is free.
        scopes[holder].cancel()
        took = await wait_until(lambda: tracker.running == {"b" if holder == "a" else "a"})
        assert took < 5
        tg.cancel_scope.cancel()
    assert tracker.most == 1
    assert tracker.stopped[0] == holder


async def test_a_holder_whose_connection_dies_stops_and_the_other_takes_over(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.new_database("singleton_kill")
    tracker = Tracker()
    async with anyio.create_task_group() as tg:
        for who in ("a", "b"):
            tg.start_soon(run_singleton, tracker.service(who), fast_locks(url))
        await wait_until(lambda: bool(tracker.running))
        [holder] = tracker.running
        # What a SIGKILLed runner's host, or an administrator, does to its session.
        with psycopg.connect(url, autocommit=True) as admin:
            [(pid,)] = admin.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND"
                f" (classid::bigint << 32 | objid::bigint) = {lock_key_sql()}",
                (NAME,)).fetchall()
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        other = "b" if holder == "a" else "a"
        # The old holder notices its connection gone and stops its body; the other takes
        # the lock the server released. (Which comes first is a race: a holder cut off
        # from the database may overlap the next one until it notices, which is why a
        # singleton's work must be safe to repeat. A SIGKILLed runner cannot overlap.)
        stopped = await wait_until(lambda: holder in tracker.stopped)
        took = await wait_until(lambda: other in tracker.running)
        assert stopped < 5 and took < 5
        # The old holder pauses before competing again: the other keeps it.
        await anyio.sleep(1.0)
        assert tracker.running == {other}
        tg.cancel_scope.cancel()


async def test_local_locks_run_the_service_at_once() -> None:
    tracker = Tracker()
    async with anyio.create_task_group() as tg:
        await tg.start(run_singleton, tracker.service("only"), LocalLocks())
        await wait_until(lambda: tracker.running == {"only"}, limit=5)
        tg.cancel_scope.cancel()
    assert tracker.stopped == ["only"]


class Poller:
    """A plugin contributing one singleton service, as the Creatio plugin does its poll."""

    def __init__(self, tracker: Tracker, who: str) -> None:
        self.tracker = tracker
        self.who = who

    @hookimpl
    def services(self) -> list[Service]:
        return [self.tracker.service(self.who)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def runner_bridge(root, monkeypatch, tracker: Tracker, who: str, store: dict) -> Bridge:
    root.mkdir()
    install_jsonl(monkeypatch, root)
    path = write_config(root, bridge={"plugins": ["poller"]}, store=store,
                        http={"host": "127.0.0.1", "port": free_port()})
    return Bridge.from_config(path, plugins={"loop": LoopChannel(),
                                             "poller": Poller(tracker, who)})


async def test_the_runner_runs_a_singleton_service_on_sqlite(tmp_path, monkeypatch) -> None:
    tracker = Tracker()
    bridge = runner_bridge(tmp_path / "one", monkeypatch, tracker, "one", {})
    assert isinstance(bridge.singletons, LocalLocks)
    async with anyio.create_task_group() as tg:
        await tg.start(bridge.run)
        await wait_until(lambda: tracker.running == {"one"}, limit=10)
        tg.cancel_scope.cancel()


@pytest.mark.slow
async def test_two_runners_on_postgresql_run_a_singleton_service_once(
    tmp_path, monkeypatch, postgres_server: PostgresServer
) -> None:
    store = {"url": postgres_server.new_database("singleton_runners")}
    tracker = Tracker()
    bridges = [runner_bridge(tmp_path / who, monkeypatch, tracker, who, store)
               for who in ("one", "two")]
    for bridge in bridges:
        assert isinstance(bridge.singletons, AdvisoryLocks)
    async with anyio.create_task_group() as tg:
        for bridge in bridges:
            await tg.start(bridge.run)  # both ready, whichever holds the lock
        await wait_until(lambda: bool(tracker.running))
        await anyio.sleep(2.5)  # the waiter's default retry is 1 s
        assert len(tracker.started) == 1
        tg.cancel_scope.cancel()
    assert tracker.most == 1
