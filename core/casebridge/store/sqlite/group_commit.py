"""Full-sync transactions that share their commit (group commit).

A transaction that must survive power loss (accepting an inbound) commits with an fsync,
on a worker thread. Under a burst several arrive while one commits; each waiting its own
turn costs an fsync and a thread hop apiece, and holds every other writer of the process
back meanwhile. Instead, those that arrive during a commit wait for it to end and then go
together: one transaction, one fsync, one hop. Each runs in a savepoint of its own, so one
that raises is rolled back alone and its caller gets its exception; the others commit.

The process's other transactions (the outbox's) give way to them, within a bound: a client
waits on an accept, nobody on the outbox, whose work is durable already.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

__all__ = ["GIVE_WAY", "GroupCommit", "Pending", "run_each"]

T = TypeVar("T")

# How many group commits another transaction of the process waits out before it goes
# anyway (see GroupCommit.give_way). Full-sync transactions are accepts a client waits for
# (an SMTP 250); the others are the outbox's, whose backlog only has to drain as fast as it
# builds. Measured with bench/burst.py on 2 cores while this was built: never giving way,
# 450 msg/s; giving way to one group, 500; always, 700-780 but the backlog then drained
# after the burst more slowly than it had come (1.2-1.3x the burst's duration); two, 630-710
# msg/s with the backlog drained within the burst's own duration.
GIVE_WAY = 2


@dataclass(slots=True)
class Pending:
    """One transaction's function, and once its group ran, its result or error."""

    fn: Callable[[sqlite3.Connection], Any]
    result: Any = None
    error: BaseException | None = None
    finished: bool = False


def run_each(conn: sqlite3.Connection, group: Sequence[Pending]) -> None:
    """Each function of ``group`` in its own savepoint of the open transaction."""
    for pending in group:
        conn.execute("SAVEPOINT grouped")
        try:
            pending.result = pending.fn(conn)
        except Exception as exc:
            conn.execute("ROLLBACK TO grouped")
            pending.error = exc
        conn.execute("RELEASE grouped")


class GroupCommit:
    """Queues full-sync transactions; ``commit_group`` commits a group of them at once and
    must mark each one finished (with its error when the whole commit failed)."""

    def __init__(self, commit_group: Callable[[list[Pending]], Awaitable[None]]) -> None:
        self._commit_group = commit_group
        self._queued: list[Pending] = []
        self._committing: anyio.Event | None = None
        self._groups = 0  # groups committed (or failed) so far

    @property
    def busy(self) -> bool:
        """A group is committing, or transactions are queued for the next."""
        return self._committing is not None or bool(self._queued)

    async def give_way(self) -> None:
        """Let queued full-sync transactions go first: until none is queued or committing,
        or ``GIVE_WAY`` groups have committed meanwhile."""
        committed = self._groups
        while self.busy and self._groups < committed + GIVE_WAY:
            if self._committing is not None:
                await self._committing.wait()
            else:
                await anyio.lowlevel.checkpoint()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        pending = Pending(fn)
        self._queued.append(pending)
        while not pending.finished:
            if self._committing is not None:  # a group is committing: ours is the next
                await self._committing.wait()
                continue
            group, self._queued = self._queued, []
            self._committing = anyio.Event()
            try:
                await self._commit_group(group)
            except BaseException:
                # Cancelled before the group ran: the others go with the next group.
                self._queued[:0] = [p for p in group if not p.finished and p is not pending]
                raise
            finally:
                committing, self._committing = self._committing, None
                self._groups += 1
                committing.set()
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[no-any-return]
