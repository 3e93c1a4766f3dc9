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

import functools
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
    "SELECT id, run_at, 0 FROM jobs INDEXED BY jobs_head_due"
    " WHERE state = 'pending' AND is_head = 1 AND run_at <= :now ORDER BY run_at, id LIMIT 1"
)
_DUE_KIND = (
    "SELECT id, run_at, 0 FROM jobs INDEXED BY jobs_head_due_kind"
    " WHERE state = 'pending' AND is_head = 1 AND kind = :k{n} AND run_at <= :now"
    " ORDER BY run_at, id LIMIT 1"
)
# Expired leases are few (at most one per dead worker's job), so filtering them by kind
# costs nothing the backlog could grow.
_EXPIRED = (
    "SELECT id, run_at, 0 FROM jobs INDEXED BY jobs_running_lease"
    " WHERE state = 'running' AND lease_until <= :now{kinds} ORDER BY run_at, id LIMIT 1"
)

# The next job of the order key whose job just finished (the same session's, or the same
# sender's) before anything older: work on one conversation, once started, runs to its end
# instead of queueing each step behind the whole backlog (a handoff's sync job waited
# behind every other handoff), and in the order the key keeps.
_SAME_KEY = (
    "SELECT id, run_at, 1 FROM jobs INDEXED BY jobs_by_order"
    " WHERE order_key = :key AND order_key <> '' AND state = 'pending' AND is_head = 1"
    " AND run_at <= :now{kinds} ORDER BY id LIMIT 1"
)

_TAKE = """
WITH due (id, run_at, preferred) AS ({probes})
UPDATE jobs SET
    state = 'running',
    attempts = attempts + 1,
    worker_id = :worker,
    lease_until = :lease_until,
    updated_at = :now,
    is_head = 1,
    last_error = CASE WHEN state = 'running'
        THEN 'lease expired: worker ' || worker_id || ' did not finish attempt ' || attempts
        ELSE last_error END
WHERE id = (SELECT id FROM due ORDER BY preferred DESC, run_at, id LIMIT 1)
    AND ((state = 'pending' AND is_head = 1) OR (state = 'running' AND lease_until <= :now))
RETURNING *
"""


@functools.lru_cache(maxsize=64)
def _take_sql(kind_count: int | None, same_key: bool = False) -> str:
    """The claim as one statement: a probe per kind (each one index seek), one over expired
    leases, and the update of the oldest they found. One statement rather than one per
    probe: a claim's cost was mostly the statements' own overhead, one per handler kind.
    With ``same_key``, the due head of the order key ``:key`` comes first."""
    kinds = ""
    if kind_count is None:
        probes = [_DUE]
    else:
        kinds = f" AND kind IN ({', '.join(f':k{n}' for n in range(kind_count))})"
        probes = [_DUE_KIND.format(n=n) for n in range(kind_count)]
    probes.append(_EXPIRED.format(kinds=kinds))
    if same_key:
        probes.insert(0, _SAME_KEY.format(kinds=kinds))
    # ORDER BY and LIMIT apply to a whole compound SELECT: each probe is its own subquery.
    union = " UNION ALL ".join(f"SELECT * FROM ({probe})" for probe in probes)  # noqa: S608
    return _TAKE.format(probes=union)


def claim_row(
    conn: sqlite3.Connection,
    worker: str,
    now: str,
    lease_until: str,
    kinds: Sequence[str] | None,
    same_key: str = "",
) -> sqlite3.Row | None:
    """Take the oldest due head (pending and due, or running with an expired lease) for
    ``worker``, or first the due head of the order key ``same_key`` when it has one; the
    caller holds the write transaction."""
    params: dict[str, str] = {"now": now, "worker": worker, "lease_until": lease_until,
                              "key": same_key}
    if kinds is not None:
        params.update((f"k{n}", kind) for n, kind in enumerate(kinds))
    sql = _take_sql(None if kinds is None else len(kinds), bool(same_key))
    row: sqlite3.Row | None = conn.execute(sql, params).fetchone()
    return row


# A key's head: its running job, else its lowest-id pending job (each one index seek).
_HEAD = (
    "(SELECT COALESCE("
    "(SELECT id FROM jobs WHERE order_key = :key AND order_key <> '' AND state = 'running'"
    " ORDER BY id LIMIT 1), "
    "(SELECT id FROM jobs WHERE order_key = :key AND order_key <> '' AND state = 'pending'"
    " ORDER BY id LIMIT 1)))"
)
# One statement sets the flag on the head and clears it elsewhere; the uncorrelated
# subquery is evaluated once.
_REFRESH = (
    f"UPDATE jobs SET is_head = (id IS {_HEAD})"  # noqa: S608 -- constant text
    " WHERE order_key = :key AND order_key <> '' AND state IN ('pending', 'running')"
    f" AND (is_head = 1 OR id IS {_HEAD})"
)


def refresh_heads(conn: sqlite3.Connection, order_keys: Iterable[str]) -> None:
    """Make each key's head right again after its jobs changed state (same transaction)."""
    for key in dict.fromkeys(k for k in order_keys if k):
        conn.execute(_REFRESH, {"key": key})


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
