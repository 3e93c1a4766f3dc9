"""The SQLite job queue's claim path: job heads kept per order key, claims by index probe.

Each order key has one *head*, the job that may run next: its running job if any, else its
lowest-id pending job (jobs without an order key are always heads). ``jobs.is_head`` holds it
(migration 2) and these helpers keep it right inside the caller's transaction: on
enqueue, and after a job leaves or re-enters pending/running (finish, retry, kill, replay).
A claim then needs no scan of the backlog: one probe of the partial index over due pending
heads (per kind) and one over expired leases. A running job is always its key's head, so a
replayed earlier job waits until the running one finishes, as the store promises.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

__all__ = ["claim_row", "head_flag_sql", "next_due", "refresh_heads"]

# "order_key <> ''" in the queries below lets SQLite use the partial index jobs_by_order.
# An inserted job is a head when its order key has no pending or running job yet.
head_flag_sql = (
    "CASE WHEN :order_key = '' THEN 1 WHEN EXISTS ("
    "SELECT 1 FROM jobs AS o WHERE o.order_key = :order_key AND o.order_key <> ''"
    " AND o.state IN ('pending', 'running')) THEN 0 ELSE 1 END"
)

_DUE = (
    "SELECT id, run_at FROM jobs INDEXED BY jobs_head_due"
    " WHERE state = 'pending' AND is_head = 1 AND run_at <= ? ORDER BY run_at, id LIMIT 1"
)
_DUE_KIND = (
    "SELECT id, run_at FROM jobs INDEXED BY jobs_head_due_kind"
    " WHERE state = 'pending' AND is_head = 1 AND kind = ? AND run_at <= ?"
    " ORDER BY run_at, id LIMIT 1"
)
_EXPIRED = (
    "SELECT id, run_at, kind FROM jobs INDEXED BY jobs_running_lease"
    " WHERE state = 'running' AND lease_until <= ? ORDER BY run_at, id"
)

_TAKE = """
UPDATE jobs SET
    state = 'running',
    attempts = attempts + 1,
    worker_id = ?,
    lease_until = ?,
    updated_at = ?,
    is_head = 1,
    last_error = CASE WHEN state = 'running'
        THEN 'lease expired: worker ' || worker_id || ' did not finish attempt ' || attempts
        ELSE last_error END
WHERE id = ? AND ((state = 'pending' AND is_head = 1) OR (state = 'running' AND lease_until <= ?))
RETURNING *
"""


def _candidates(
    conn: sqlite3.Connection, now: str, kinds: Sequence[str] | None
) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    probes = [(_DUE, (now,))] if kinds is None else [(_DUE_KIND, (k, now)) for k in kinds]
    for sql, params in probes:
        row = conn.execute(sql, params).fetchone()
        if row is not None:
            found.append((row[1], row[0]))
    # Expired leases are few (at most one per dead worker's job), so filtering them by kind
    # here costs nothing the backlog could grow.
    wanted = None if kinds is None else set(kinds)
    for job_id, run_at, kind in conn.execute(_EXPIRED, (now,)):
        if wanted is None or kind in wanted:
            found.append((run_at, job_id))
            break
    return found


def claim_row(
    conn: sqlite3.Connection,
    worker: str,
    now: str,
    lease_until: str,
    kinds: Sequence[str] | None,
) -> sqlite3.Row | None:
    """Take the oldest due head (pending and due, or running with an expired lease) for
    ``worker``; the caller holds the write transaction."""
    found = _candidates(conn, now, kinds)
    if not found:
        return None
    _, job_id = min(found)
    row: sqlite3.Row | None = conn.execute(
        _TAKE, (worker, lease_until, now, job_id, now)
    ).fetchone()
    return row


def refresh_heads(conn: sqlite3.Connection, order_keys: Iterable[str]) -> None:
    """Make each key's head right again after its jobs changed state (same transaction)."""
    for key in dict.fromkeys(k for k in order_keys if k):
        head = None
        for state in ("running", "pending"):
            head = conn.execute(
                "SELECT id FROM jobs WHERE order_key = ? AND order_key <> '' AND state = ?"
                " ORDER BY id LIMIT 1",
                (key, state),
            ).fetchone()
            if head is not None:
                break
        conn.execute(
            "UPDATE jobs SET is_head = 0 WHERE order_key = ? AND order_key <> '' AND is_head = 1"
            " AND state IN ('pending', 'running') AND id <> ?",
            (key, -1 if head is None else head[0]),
        )
        if head is not None:
            conn.execute("UPDATE jobs SET is_head = 1 WHERE id = ?", (head[0],))


def next_due(conn: sqlite3.Connection, kinds: Sequence[str] | None) -> str | None:
    """The earliest pending head's ``run_at`` or running lease end (ISO text), or None."""
    times: list[str] = []
    if kinds is None:
        probes = [("SELECT MIN(run_at) FROM jobs INDEXED BY jobs_head_due"
                   " WHERE state = 'pending' AND is_head = 1", ())]
    else:
        probes = [("SELECT MIN(run_at) FROM jobs INDEXED BY jobs_head_due_kind"
                   " WHERE state = 'pending' AND is_head = 1 AND kind = ?", (k,)) for k in kinds]
    for sql, params in probes:
        value = conn.execute(sql, params).fetchone()[0]
        if value is not None:
            times.append(value)
    for until, kind in conn.execute(
        "SELECT lease_until, kind FROM jobs INDEXED BY jobs_running_lease"
        " WHERE state = 'running' ORDER BY lease_until"
    ):
        if kinds is None or kind in kinds:
            times.append(until)
            break
    return min(times) if times else None
