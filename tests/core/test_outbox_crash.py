"""A runner process killed with SIGKILL mid-job loses nothing: a new runner reclaims the
expired leases and finishes every job, and no job's side effect is repeated beyond the jobs
that were in flight at the kill."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import pytest
from casebridge.backoff import BackoffPolicy
from casebridge.model import utcnow
from casebridge.outbox import Outbox
from casebridge.store import Job, NewJob
from casebridge.store.sqlite import SqliteStore

pytestmark = pytest.mark.slow

LEASE_SECONDS = 30
POLICY = BackoffPolicy(base=1, factor=2, cap=10, jitter=1, max_attempts=5)

# The child runner. Its handler records each job's side effect in a separate database
# (counting runs per key), returns a follow-up for "job-*" keys, and hangs on the keys
# listed in HANG after announcing it, so the parent can kill it at a known point.
CHILD = """
import sqlite3, sys
from datetime import timedelta
from pathlib import Path

import anyio

from casebridge.backoff import BackoffPolicy
from casebridge.outbox import Outbox
from casebridge.store.sqlite import SqliteStore
from casebridge.store import NewJob

db, effects, workers, pause = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
HANG = set(sys.argv[5].split(",")) if len(sys.argv) > 5 else set()


def record(key):
    with sqlite3.connect(effects, timeout=30) as conn:
        conn.execute(
            "INSERT INTO runs (key, n) VALUES (?, 1) ON CONFLICT (key) DO UPDATE SET n = n + 1",
            (key,),
        )
    conn.close()


async def main():
    async with SqliteStore(db) as store:
        async def handle(job):
            if job.key in HANG:
                print("hanging", job.key, flush=True)
                await anyio.sleep(3600)
            if pause:
                await anyio.sleep(pause)
            record(job.key)
            print("done", job.key, flush=True)
            if job.key.startswith("job-"):
                return [NewJob("effect", {}, key="after-" + job.key[4:])]
            return None

        outbox = Outbox(
            store,
            {"effect": handle},
            workers=workers,
            lease=timedelta(seconds=__LEASE__),
            policy=BackoffPolicy(base=1, factor=2, cap=10, jitter=1, max_attempts=5),
            worker_id="child",
        )
        await outbox.drain()


anyio.run(main)
""".replace("__LEASE__", str(LEASE_SECONDS))


def make_effects(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE runs (key TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    conn.close()


def runs(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        found = dict(conn.execute("SELECT key, n FROM runs").fetchall())
    conn.close()
    return found


def record(path: Path, key: str) -> None:
    with sqlite3.connect(path, timeout=30) as conn:
        conn.execute(
            "INSERT INTO runs (key, n) VALUES (?, 1) ON CONFLICT (key) DO UPDATE SET n = n + 1",
            (key,),
        )
    conn.close()


async def enqueue(db: Path, count: int) -> None:
    async with SqliteStore(db) as store:
        await store.enqueue([NewJob("effect", {"n": n}, key=f"job-{n}") for n in range(count)])


async def recover(db: Path, effects: Path) -> dict[str, int]:
    """A fresh runner whose clock is past every lease the child held."""

    def later() -> datetime:
        return utcnow() + timedelta(seconds=LEASE_SECONDS * 4)

    async def handle(job: Job) -> list[NewJob]:
        record(effects, job.key)
        if job.key.startswith("job-"):
            return [NewJob("effect", {}, key="after-" + job.key[4:])]
        return []

    async with SqliteStore(db, clock=later) as store:
        box = Outbox(
            store,
            {"effect": handle},
            workers=2,
            lease=timedelta(seconds=LEASE_SECONDS),
            policy=POLICY,
            worker_id="parent",
            clock=later,
        )
        await box.drain(timeout=60)
        jobs = await store.list_jobs(limit=10_000)
        assert {j.state for j in jobs} == {"done"}
        return {j.key: j.attempts for j in jobs}


def run_child(tmp_path: Path, db: Path, effects: Path, *args: str) -> subprocess.Popen[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.Popen(
        [sys.executable, str(script), str(db), str(effects), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def kill_after(child: subprocess.Popen[str], wanted: int, word: str) -> list[str]:
    """Read the child's lines until ``wanted`` of them start with ``word``, then SIGKILL it."""
    assert child.stdout is not None
    lines: list[str] = []
    try:
        while sum(line.startswith(word) for line in lines) < wanted:
            line = child.stdout.readline()
            if not line:
                _, err = child.communicate(timeout=30)
                raise AssertionError(f"child ended early: {lines!r}\n{err}")
            lines.append(line.strip())
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return lines


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    conn.close()
    return str(result)


def test_jobs_held_by_a_killed_runner_finish_exactly_once(tmp_path: Path) -> None:
    db, effects = tmp_path / "casebridge.db", tmp_path / "effects.db"
    make_effects(effects)
    anyio.run(enqueue, db, 10)

    child = run_child(tmp_path, db, effects, "2", "0", "job-3,job-7")
    lines = kill_after(child, 2, "hanging")
    assert sorted(line for line in lines if line.startswith("hanging")) == [
        "hanging job-3",
        "hanging job-7",
    ]
    assert integrity(db) == "ok"

    attempts = anyio.run(recover, db, effects)
    expected = {f"job-{n}" for n in range(10)} | {f"after-{n}" for n in range(10)}
    assert runs(effects) == dict.fromkeys(expected, 1)
    assert set(attempts) == expected
    assert attempts["job-3"] == attempts["job-7"] == 2
    assert {k for k, a in attempts.items() if a != 1} == {"job-3", "job-7"}


def test_a_runner_killed_at_an_arbitrary_moment_loses_nothing(tmp_path: Path) -> None:
    db, effects = tmp_path / "casebridge.db", tmp_path / "effects.db"
    make_effects(effects)
    count, workers = 150, 3
    anyio.run(enqueue, db, count)

    child = run_child(tmp_path, db, effects, str(workers), "0.002")
    kill_after(child, 60, "done")
    assert integrity(db) == "ok"

    attempts = anyio.run(recover, db, effects)
    done = runs(effects)
    expected = {f"job-{n}" for n in range(count)} | {f"after-{n}" for n in range(count)}
    assert set(done) == set(attempts) == expected
    # Only a job in flight at the kill (one per child worker) can have run twice.
    repeated = {key for key, n in done.items() if n > 1}
    assert all(n <= 2 for n in done.values())
    assert len(repeated) <= workers
    assert repeated <= {key for key, a in attempts.items() if a > 1}
