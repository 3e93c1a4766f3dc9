"""The outbox's jobs in SQLite: the :class:`~casebridge.store.JobQueue` part of the SQLite
store. Claims never scan the backlog: each order key's head job is marked (:mod:`.heads`),
so a claim is an index probe whatever the number pending. Inserts use ``ON CONFLICT``, and
every time comes from the injected clock, never from the database, so several processes
agree as long as their clocks do."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta

from ..records import JOB_STATES, Job, JobState, NewJob, RecordNotFound
from ..rows import SQLITE as rows
from ..rows import error_text, to_json
from .db import Database
from .heads import claim_row, head_flag_sql, next_due, refresh_heads

__all__ = ["JobQueue"]

# "WHERE true" keeps SQLite from reading ON CONFLICT as a join constraint of the SELECT.
_INSERT_JOB = f"""
INSERT INTO jobs (kind, key, order_key, payload, state, attempts, max_attempts, run_at,
                  trace_id, created_at, updated_at, is_head)
SELECT :kind, :key, :order_key, :payload, 'pending', 0, :max_attempts, :run_at,
       :trace_id, :now, :now, {head_flag_sql}
WHERE true
ON CONFLICT (key) DO NOTHING
"""

_REPLAY = (
    "UPDATE jobs SET state = 'pending', attempts = 0, run_at = ?, lease_until = NULL,"
    " worker_id = '', updated_at = ? WHERE state = 'dead'"
)


def _placeholders(values: Sequence[object]) -> str:
    return ", ".join("?" for _ in values)


class JobQueue:
    """The outbox's jobs: enqueue, claim with a lease, finish fenced by attempt, replay."""

    db: Database

    @staticmethod
    def _insert_jobs(conn: sqlite3.Connection, jobs: Sequence[NewJob], now: datetime) -> None:
        stamp = rows.ts(now)
        conn.executemany(
            _INSERT_JOB,
            [
                {
                    "kind": job.kind,
                    "key": job.key,
                    "order_key": job.order_key,
                    "payload": to_json(dict(job.payload)),
                    "max_attempts": job.max_attempts,
                    "run_at": rows.ts(job.run_at, "NewJob.run_at") if job.run_at else stamp,
                    "trace_id": job.trace_id,
                    "now": stamp,
                }
                for job in jobs
            ],
        )

    async def enqueue(self, jobs: Sequence[NewJob]) -> None:
        if not jobs:
            return
        await self.db.tx(lambda conn: self._insert_jobs(conn, jobs, self.db.now()))

    async def claim_job(
        self, worker_id: str, lease: timedelta, kinds: Sequence[str] | None = None
    ) -> Job | None:
        if lease <= timedelta(0):
            raise ValueError(f"lease must be positive, got {lease}")
        if kinds is not None and not kinds:
            return None
        names = None if kinds is None else list(dict.fromkeys(kinds))

        return await self.db.tx(lambda conn: self._claim(conn, worker_id, lease, names))

    def _claim(self, conn: sqlite3.Connection, worker_id: str, lease: timedelta,
               names: list[str] | None, same_key: str = "") -> Job | None:
        now = self.db.now()
        row = claim_row(conn, worker_id, rows.ts(now), rows.ts(now + lease), names,
                        same_key=same_key)
        return None if row is None else rows.job(row)

    async def complete_and_claim(
        self,
        job_id: int,
        follow_ups: Sequence[NewJob] = (),
        *,
        attempt: int | None = None,
        worker_id: str,
        lease: timedelta,
        kinds: Sequence[str] | None = None,
        order_key: str = "",
    ) -> tuple[bool, Job | None]:
        if lease <= timedelta(0):
            raise ValueError(f"lease must be positive, got {lease}")
        names = None if kinds is None else list(dict.fromkeys(kinds))

        def run(conn: sqlite3.Connection) -> tuple[bool, Job | None]:
            done = self._complete(conn, job_id, attempt, follow_ups)
            if names is not None and not names:
                return done, None
            return done, self._claim(conn, worker_id, lease, names, order_key)

        return await self.db.tx(run)

    async def renew_lease(self, job_id: int, attempt: int, lease: timedelta) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            now = self.db.now()
            return (
                conn.execute(
                    "UPDATE jobs SET lease_until = ?, updated_at = ?"
                    " WHERE id = ? AND state = 'running' AND attempts = ?",
                    (rows.ts(now + lease), rows.ts(now), job_id, attempt),
                ).rowcount
                == 1
            )

        return await self.db.tx(run)

    def _finish(
        self,
        conn: sqlite3.Connection,
        job_id: int,
        attempt: int | None,
        sets: str,
        params: Sequence[object],
    ) -> bool:
        if attempt is None:
            fence, fence_params = "state IN ('pending', 'running')", ()
        else:
            fence, fence_params = "state = 'running' AND attempts = ?", (attempt,)
        changed = conn.execute(
            f"UPDATE jobs SET {sets}, lease_until = NULL, updated_at = ?"  # noqa: S608
            f" WHERE id = ? AND {fence} RETURNING order_key",
            (*params, rows.ts(self.db.now()), job_id, *fence_params),
        ).fetchone()
        if changed is None:
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
                raise RecordNotFound(f"no job with id {job_id}")
            return False
        # The job left (or went back to) pending: its order key may have a new head.
        refresh_heads(conn, [changed[0]])
        return True

    async def complete_job(
        self, job_id: int, follow_ups: Sequence[NewJob] = (), *, attempt: int | None = None
    ) -> bool:
        return await self.db.tx(lambda conn: self._complete(conn, job_id, attempt, follow_ups))

    def _complete(self, conn: sqlite3.Connection, job_id: int, attempt: int | None,
                  follow_ups: Sequence[NewJob]) -> bool:
        if not self._finish(conn, job_id, attempt, "state = 'done'", ()):
            return False
        if follow_ups:
            self._insert_jobs(conn, follow_ups, self.db.now())
        return True

    async def retry_job(
        self, job_id: int, run_at: datetime, error: str, *, attempt: int | None = None
    ) -> bool:
        due = rows.ts(run_at, "run_at")
        return await self.db.tx(
            lambda conn: self._finish(
                conn,
                job_id,
                attempt,
                "state = 'pending', run_at = ?, last_error = ?, worker_id = ''",
                (due, error_text(error)),
            )
        )

    async def kill_job(self, job_id: int, error: str, *, attempt: int | None = None) -> bool:
        return await self.db.tx(
            lambda conn: self._finish(
                conn, job_id, attempt, "state = 'dead', last_error = ?", (error_text(error),)
            )
        )

    async def get_job(self, job_id: int) -> Job | None:
        def run(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return None if row is None else rows.job(row)

        return await self.db.read(run)

    async def list_jobs(self, state: JobState | None = None, limit: int = 100) -> list[Job]:
        if state is not None and state not in JOB_STATES:
            raise ValueError(f"job state must be one of {', '.join(JOB_STATES)}, not {state!r}")
        where, params = ("WHERE state = ?", (state,)) if state else ("", ())

        def run(conn: sqlite3.Connection) -> list[Job]:
            found = conn.execute(
                f"SELECT * FROM jobs {where} ORDER BY id DESC LIMIT ?",  # noqa: S608
                (*params, limit),
            ).fetchall()
            return [rows.job(row) for row in found]

        return await self.db.read(run)

    async def replay_dead(self, job_ids: Sequence[int] | None = None) -> int:
        def run(conn: sqlite3.Connection) -> int:
            now = rows.ts(self.db.now())
            keys: list[str] = []
            if job_ids is None:
                keys = [r[0] for r in conn.execute(f"{_REPLAY} RETURNING order_key", (now, now))]
            else:
                ids = list(dict.fromkeys(job_ids))
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    keys += [r[0] for r in conn.execute(
                        f"{_REPLAY} AND id IN ({_placeholders(chunk)}) RETURNING order_key",
                        (now, now, *chunk),
                    )]
            # A replayed job may come before its key's current head (or have none).
            refresh_heads(conn, keys)
            return len(keys)

        return await self.db.tx(run)

    async def job_counts(self) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            counts: dict[str, int] = dict.fromkeys(JOB_STATES, 0)
            for state, count in conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
                counts[state] = count
            return counts

        return await self.db.read(run)

    async def next_run_at(self, kinds: Sequence[str] | None = None) -> datetime | None:
        if kinds is not None and not kinds:
            return None
        names = None if kinds is None else list(dict.fromkeys(kinds))
        return await self.db.read(lambda conn: rows.opt_dt(next_due(conn, names)))
