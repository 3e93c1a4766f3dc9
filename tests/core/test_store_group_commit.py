"""Full-sync transactions of the SQLite store that arrive together share one commit, and
one that fails is rolled back alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from casebridge.model import RawInbound
from casebridge.store.records import NewJob
from casebridge.store.sqlite import SqliteStore
from casebridge.store.sqlite.db import Database

pytestmark = pytest.mark.anyio


RAWS = {n: RawInbound(channel="email", payload=b"mail %d" % n, sender=f"c{n}@example.org")
        for n in range(11)}


async def test_accepts_arriving_together_share_commits_and_a_bad_one_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commits: list[int] = []
    real = Database._in_tx

    def counted(self: Database, conn: Any, fn: Any, full_sync: bool) -> Any:
        if full_sync:
            commits.append(1)
        return real(self, conn, fn, full_sync)

    monkeypatch.setattr(Database, "_in_tx", counted)
    async with SqliteStore(tmp_path / "casebridge.db") as store:
        await store.accept_raw("taken", RAWS[0], NewJob("ingest", {}, key="ingest:taken"))
        outcomes: dict[int, BaseException | None] = {}

        async def accept(n: int) -> None:
            raw_id = "taken" if n == 5 else f"raw-{n}"
            try:
                await store.accept_raw(raw_id, RAWS[n], NewJob("ingest", {}, key=f"k{n}"))
                outcomes[n] = None
            except ValueError as exc:
                outcomes[n] = exc

        commits.clear()
        async with anyio.create_task_group() as tg:
            for n in range(1, 11):
                tg.start_soon(accept, n)
        assert len(commits) < 10  # some shared a commit
        assert isinstance(outcomes.pop(5), ValueError)
        assert set(outcomes.values()) == {None}
        for n in outcomes:
            assert await store.get_raw(f"raw-{n}") == RAWS[n]
        assert await store.get_raw("taken") == RAWS[0]  # the bad one changed nothing
        keys = {j.key for j in await store.list_jobs(limit=50)}
        assert "k5" not in keys and {f"k{n}" for n in outcomes} <= keys
