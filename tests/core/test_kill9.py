"""kill -9 at random moments, again and again: nothing lost, nothing written twice."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import anyio
import pytest
from casebridge.store.sqlite import SqliteStore
from support.bridges import write_config
from support.kill_child import CUSTOMERS

CHILD = Path(__file__).resolve().parents[1] / "support" / "kill_child.py"


def start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(CHILD), str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
async def test_kill9_during_handoffs_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, bridge={"plugins": ["assistant"]},
        # A short lease: a job whose runner was killed is taken over quickly.
        outbox={"lease_seconds": 1.0, "workers": 3},
    )
    rng = random.Random(20261121)
    kills = 0
    for _ in range(8):
        child = start(config)
        # Kill while jobs run: after the inbounds are stored, at a random moment.
        await anyio.to_thread.run_sync(child.stdout.readline)
        await anyio.sleep(rng.uniform(0.05, 0.6))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
        child.wait(timeout=30)
    child = start(config)
    out, err = child.communicate(timeout=180)
    assert child.returncode == 0 and "DONE" in out, err[-2000:]
    assert kills >= 6

    import json

    records = [json.loads(line) for line in (tmp_path / "data" / "cases.jsonl").open()]
    cases = [r for r in records if r["type"] == "case"]
    activities = [r for r in records if r["type"] == "activity"]
    store = SqliteStore(tmp_path / "data" / "casebridge.db")
    await store.open()
    try:
        sessions = await store.list_sessions(limit=1000)
        assert len(sessions) == CUSTOMERS
        # Every handoff is exactly one case; no record is written twice.
        assert len(cases) == CUSTOMERS == len({c["session_id"] for c in cases})
        assert not [k for k, n in Counter(a["id"] for a in activities).items() if n > 1]
        for session in sessions:
            assert session.case is not None
            written = [a for a in activities if a["case_id"] == session.case.case_id]
            transcript = await store.transcript(session.id)
            # Every message is one activity, in message order, the first with the link.
            assert [a["message_id"] for a in written] == [m.id for m in transcript]
            assert written[0]["first"] and not any(a["first"] for a in written[1:])
    finally:
        await store.close()
