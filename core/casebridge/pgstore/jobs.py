"""The job queue (the outbox's store) on PostgreSQL.

Same head structure as SQLite (see :mod:`casebridge.store.sqlite.heads`): ``jobs.is_head`` marks
each order key's running job, or else its lowest pending one. Claims lock one head with
``FOR UPDATE SKIP LOCKED`` per probe, so concurrent runners never wait on each other and
never scan the backlog. Everything that changes which job heads a key (enqueue, finish,
replay) first takes a transaction advisory lock per order key, in sorted key order, then
locks that key's live rows; a claimer takes no advisory lock and waits for nothing, so the
two cannot deadlock. Enqueues NOTIFY ``casebridge_jobs`` so idle runners wake at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from ..store.records import JOB_STATES, Job, JobState, NewJob, RecordNotFound
from ..store.rows import POSTGRES as rows
from ..store.rows import error_text, to_json
from .db import Conn, Database

__all__ = ["CHANNEL", "JobQueue"]

CHANNEL = "casebridge_jobs"

_INSERT = """
INSERT INTO jobs (kind, key, order_key, payload, state, attempts, max_attempts, run_at,
                  trace_id, created_at, updated_at, is_head)
VALUES (%(kind)s, %(key)s, %(order_key)s, %(payload)s, 'pending', 0, %(max_attempts)s,
        %(run_at)s, %(trace_id)s, %(now)s, %(now)s,
        %(order_key)s = '' OR NOT EXISTS (
            SELECT 1 FROM jobs AS o WHERE o.order_key = %(order_key)s AND o.order_key <> ''
              AND o.state IN ('pending', 'running')))
ON CONFLICT (key) DO NOTHING
"""

_DUE_KIND = (
    "SELECT id, run_at FROM jobs WHERE state = 'pending' AND is_head AND kind = %s"
    " AND run_at <= %s ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
)
_DUE_ANY = (
    "SELECT id, run_at FROM jobs WHERE state = 'pending' AND is_head"
    " AND run_at <= %s ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
)
_EXPIRED = (
    "SELECT id, run_at FROM jobs WHERE state = 'running' AND lease_until <= %s"
    " AND (%s::text[] IS NULL OR kind = ANY(%s::text[]))"
    " ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
)
_SAME_KEY = (
    "SELECT id, run_at FROM jobs WHERE order_key = %s AND order_key <> '' AND state = 'pending'"
    " AND is_head AND run_at <= %s AND (%s::text[] IS NULL OR kind = ANY(%s::text[]))"
    " ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
)
_TAKE = """
UPDATE jobs SET
    state = 'running', attempts = attempts + 1, worker_id = %(worker)s,
    lease_until = %(lease_until)s, updated_at = %(now)s, is_head = TRUE,
    last_error = CASE WHEN state = 'running'
        THEN 'lease expired: worker ' || worker_id || ' did not finish attempt ' || attempts
        ELSE last_error END
WHERE id = %(id)s
RETURNING *
"""


async def lock_order_keys(conn: Conn, keys: Iterable[str]) -> None:
    """Serialize head changes per order key (sorted, so two transactions cannot deadlock)."""
    for key in sorted({k for k in keys if k}):
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (key,))


async def refresh_heads(conn: Conn, keys: Iterable[str]) -> None:
    """Mark each key's head again; the caller holds the keys' advisory locks."""
    for key in sorted({k for k in keys if k}):
        # FOR UPDATE waits for a claimer holding one of these rows and then reads its new
        # state, so a job claimed meanwhile counts as running (and stays the head).
        cur = await conn.execute(
            "SELECT id, state, is_head FROM jobs WHERE order_key = %s AND order_key <> ''"
            " AND state IN ('pending', 'running') ORDER BY id FOR UPDATE", (key,))
        live = await cur.fetchall()
        running = [r["id"] for r in live if r["state"] == "running"]
        head = running[0] if running else (live[0]["id"] if live else None)
        for row in live:
            if row["is_head"] != (row["id"] == head):
                await conn.execute("UPDATE jobs SET is_head = %s WHERE id = %s",
                                   (row["id"] == head, row["id"]))


def _job_row(job: NewJob, now: datetime) -> dict[str, Any]:
    return {
        "kind": job.kind,
        "key": job.key,
        "order_key": job.order_key,
        "payload": to_json(dict(job.payload)),
        "max_attempts": job.max_attempts,
        "run_at": rows.ts(job.run_at, "NewJob.run_at") if job.run_at else now,
        "trace_id": job.trace_id,
        "now": now,
    }


class JobQueue:
    """The outbox's jobs: enqueue, claim with a lease, finish fenced by attempt, replay."""

    db: Database

    async def _insert_jobs_in(self, conn: Conn, jobs: Sequence[NewJob]) -> None:
        if not jobs:
            return
        now = self.db.now()
        params = [_job_row(job, now) for job in jobs]
        await lock_order_keys(conn, (job.order_key for job in jobs))
        async with conn.cursor() as cur:
            await cur.executemany(_INSERT, params)
        # The payload is how many jobs became runnable: each runner wakes that many idle
        # workers, not all of them (N runners x W workers claims for one job).
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(len(jobs))))

    async def enqueue(self, jobs: Sequence[NewJob]) -> None:
        if not jobs:
            return
        async with self.db.tx() as conn:
            await self._insert_jobs_in(conn, jobs)

    async def claim_job(
        self, worker_id: str, lease: timedelta, kinds: Sequence[str] | None = None
    ) -> Job | None:
        if lease <= timedelta(0):
            raise ValueError(f"lease must be positive, got {lease}")
        if kinds is not None and not kinds:
            return None
        names = None if kinds is None else sorted(set(kinds))
        async with self.db.tx() as conn:
            return await self._claim_in(conn, worker_id, lease, names)

    async def _claim_in(self, conn: Conn, worker_id: str, lease: timedelta,
                        names: list[str] | None, same_key: str = "") -> Job | None:
        now = self.db.now()
        found: list[tuple[datetime, int]] = []
        if same_key:  # the same conversation's next job first (see sqlite/heads.py)
            cur = await conn.execute(_SAME_KEY, (same_key, now, names, names))
            row = await cur.fetchone()
            if row is not None:
                found.append((row["run_at"], row["id"]))
        if not found:
            probes = ([(_DUE_ANY, (now,))] if names is None
                      else [(_DUE_KIND, (kind, now)) for kind in names])
            probes.append((_EXPIRED, (now, names, names)))
            for sql, params in probes:
                cur = await conn.execute(sql, params)
                row = await cur.fetchone()
                if row is not None:
                    found.append((row["run_at"], row["id"]))
        if not found:
            return None
        # The other locked candidates are released at commit, a moment later.
        _, job_id = min(found)
        cur = await conn.execute(_TAKE, {"worker": worker_id, "lease_until": now + lease,
                                         "now": now, "id": job_id})
        taken = await cur.fetchone()
        assert taken is not None
        return rows.job(taken)

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
        names = None if kinds is None else sorted(set(kinds))
        async with self.db.tx() as conn:
            done = await self._finish(conn, job_id, attempt, "state = 'done'", (), follow_ups)
            if names is not None and not names:
                return done, None
            return done, await self._claim_in(conn, worker_id, lease, names, order_key)

    async def renew_lease(self, job_id: int, attempt: int, lease: timedelta) -> bool:
        now = self.db.now()
        async with self.db.tx() as conn:
            cur = await conn.execute(
                "UPDATE jobs SET lease_until = %s, updated_at = %s"
                " WHERE id = %s AND state = 'running' AND attempts = %s",
                (now + lease, now, job_id, attempt))
            return cur.rowcount == 1

    async def _finish(
        self, conn: Conn, job_id: int, attempt: int | None, sets: str, params: Sequence[object],
        follow_ups: Sequence[NewJob] = (),
    ) -> bool:
        cur = await conn.execute("SELECT order_key FROM jobs WHERE id = %s", (job_id,))
        found = await cur.fetchone()
        if found is None:
            raise RecordNotFound(f"no job with id {job_id}")
        await lock_order_keys(conn, [found["order_key"], *(j.order_key for j in follow_ups)])
        if attempt is None:
            fence, fence_params = "state IN ('pending', 'running')", ()
        else:
            fence, fence_params = "state = 'running' AND attempts = %s", (attempt,)
        cur = await conn.execute(
            f"UPDATE jobs SET {sets}, lease_until = NULL, updated_at = %s"  # noqa: S608
            f" WHERE id = %s AND {fence}".encode(),
            (*params, self.db.now(), job_id, *fence_params))
        if cur.rowcount == 0:
            return False
        await refresh_heads(conn, [found["order_key"]])
        if follow_ups:
            await self._insert_jobs_in(conn, follow_ups)
        elif found["order_key"]:
            await conn.execute("SELECT pg_notify(%s, '1')", (CHANNEL,))  # the key's next job
        return True

    async def complete_job(
        self, job_id: int, follow_ups: Sequence[NewJob] = (), *, attempt: int | None = None
    ) -> bool:
        async with self.db.tx() as conn:
            return await self._finish(conn, job_id, attempt, "state = 'done'", (), follow_ups)

    async def retry_job(
        self, job_id: int, run_at: datetime, error: str, *, attempt: int | None = None
    ) -> bool:
        due = rows.ts(run_at, "run_at")
        async with self.db.tx() as conn:
            return await self._finish(
                conn, job_id, attempt,
                "state = 'pending', run_at = %s, last_error = %s, worker_id = ''",
                (due, error_text(error)))

    async def kill_job(self, job_id: int, error: str, *, attempt: int | None = None) -> bool:
        async with self.db.tx() as conn:
            return await self._finish(conn, job_id, attempt, "state = 'dead', last_error = %s",
                                      (error_text(error),))

    async def get_job(self, job_id: int) -> Job | None:
        row = await self.db.one("SELECT * FROM jobs WHERE id = %s", (job_id,))
        return None if row is None else rows.job(row)

    async def list_jobs(self, state: JobState | None = None, limit: int = 100) -> list[Job]:
        if state is not None and state not in JOB_STATES:
            raise ValueError(f"job state must be one of {', '.join(JOB_STATES)}, not {state!r}")
        if state:
            found = await self.db.all(
                "SELECT * FROM jobs WHERE state = %s ORDER BY id DESC LIMIT %s", (state, limit))
        else:
            found = await self.db.all("SELECT * FROM jobs ORDER BY id DESC LIMIT %s", (limit,))
        return [rows.job(row) for row in found]

    async def replay_dead(self, job_ids: Sequence[int] | None = None) -> int:
        async with self.db.tx() as conn:
            if job_ids is None:
                cur = await conn.execute("SELECT id, order_key FROM jobs WHERE state = 'dead'")
            else:
                cur = await conn.execute(
                    "SELECT id, order_key FROM jobs WHERE state = 'dead' AND id = ANY(%s)",
                    (list(dict.fromkeys(job_ids)),))
            dead = await cur.fetchall()
            if not dead:
                return 0
            keys = [row["order_key"] for row in dead]
            await lock_order_keys(conn, keys)
            now = self.db.now()
            cur = await conn.execute(
                "UPDATE jobs SET state = 'pending', attempts = 0, run_at = %s,"
                " lease_until = NULL, worker_id = '', updated_at = %s,"
                " is_head = (order_key = '')"
                " WHERE state = 'dead' AND id = ANY(%s)",
                (now, now, [row["id"] for row in dead]))
            await refresh_heads(conn, keys)
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(cur.rowcount)))
            return cur.rowcount

    async def job_counts(self) -> dict[str, int]:
        counts: dict[str, int] = dict.fromkeys(JOB_STATES, 0)
        for row in await self.db.all("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state"):
            counts[row["state"]] = int(row["n"])
        return counts

    async def next_run_at(self, kinds: Sequence[str] | None = None) -> datetime | None:
        if kinds is not None and not kinds:
            return None
        names = None if kinds is None else sorted(set(kinds))
        times: list[datetime] = []
        async with self.db.conn() as conn:
            probes: list[tuple[str, tuple[object, ...]]] = (
                [("SELECT MIN(run_at) AS t FROM jobs WHERE state = 'pending' AND is_head", ())]
                if names is None else
                [("SELECT MIN(run_at) AS t FROM jobs WHERE state = 'pending' AND is_head"
                  " AND kind = %s", (kind,)) for kind in names])
            for sql, params in probes:
                cur = await conn.execute(sql, params)
                row = await cur.fetchone()
                if row and row["t"] is not None:
                    times.append(row["t"])
            cur = await conn.execute(
                "SELECT MIN(lease_until) AS t FROM jobs WHERE state = 'running'"
                " AND (%s::text[] IS NULL OR kind = ANY(%s::text[]))", (names, names))
            row = await cur.fetchone()
            if row and row["t"] is not None:
                times.append(row["t"])
        return rows.opt_dt(min(times)) if times else None

    async def truncate_jobs(self) -> None:
        """Empty the job table (benches on a shared database only)."""
        async with self.db.tx() as conn:
            await conn.execute("TRUNCATE jobs")
