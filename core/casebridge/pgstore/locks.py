"""Singleton locks on PostgreSQL: one session-level advisory lock per singleton service, held
on a connection of its own (see :mod:`casebridge.singletons`).

Session-level, not transaction-level: the lock lives as long as the connection, so a runner
that dies (SIGKILL, power loss) loses it the moment the server notices the connection gone,
and nothing has to expire. A dedicated connection, not one from the store's pool: a pooled
connection is handed to other work and may be closed by the pool at any time.

The holder reads its connection all the time and queries it every ``check_seconds``; when
the server closes it (a restart, an administrator's ``pg_terminate_backend``) or a query gets
no answer (a network cut), the lock is gone and the body is cancelled. Waiters try the lock
every ``retry_seconds`` (``pg_try_advisory_lock``, never a blocking wait that a cancellation
would have to interrupt on the server).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable

import anyio
import psycopg

from ..singletons import LockLost
from .db import redact

__all__ = ["AdvisoryLocks", "holder_name", "lock_key_sql"]

log = logging.getLogger(__name__)

# The store's transaction locks hash their keys with seeds 0, 1 and 2; singletons use their
# own seed and prefix so a singleton's name can never share a lock with an order key.
_SEED = 3
_PREFIX = "casebridge singleton:"


def lock_key_sql() -> str:
    """The SQL expression of a singleton's advisory lock key from its name (``%s``)."""
    return f"hashtextextended('{_PREFIX}' || %s, {_SEED})"


def holder_name(name: str) -> str:
    """The ``application_name`` of this process's connection for singleton ``name``
    (PostgreSQL keeps 63 bytes of it)."""
    return f"casebridge pid {os.getpid()} singleton {name}"[:63]


class AdvisoryLocks:
    """:class:`~casebridge.singletons.SingletonLocks` on the PostgreSQL at ``url``."""

    def __init__(self, url: str, *, retry_seconds: float = 1.0,
                 check_seconds: float = 2.0) -> None:
        self.url = url
        self.retry_seconds = retry_seconds
        self.check_seconds = check_seconds

    def __repr__(self) -> str:
        return f"AdvisoryLocks({redact(self.url)!r})"

    async def run_exclusively(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        conn = await self._acquire(name)
        lost: list[str] = []
        try:
            async with anyio.create_task_group() as tg:
                async def watch() -> None:
                    lost.append(await self._watch(conn))
                    tg.cancel_scope.cancel()

                tg.start_soon(watch)
                await body()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                # Closing the session releases its advisory locks.
                await conn.close()
        if lost:
            raise LockLost(f"the connection holding its lock dropped ({lost[0]})")

    async def _acquire(self, name: str) -> psycopg.AsyncConnection[tuple[object, ...]]:
        """A connection that holds ``name``'s lock; waits (retrying) until it does."""
        waiting_logged = False
        while True:
            conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, connect_timeout=10,
                    # Who holds what shows in pg_stat_activity, joined to pg_locks.
                    application_name=holder_name(name))
                while True:
                    cur = await conn.execute(f"SELECT pg_try_advisory_lock({lock_key_sql()})",
                                             (name,))
                    row = await cur.fetchone()
                    if row is not None and row[0] is True:
                        return conn
                    if not waiting_logged:
                        log.info("singleton %s is held by another runner; waiting", name)
                        waiting_logged = True
                    await anyio.sleep(self.retry_seconds)
            except psycopg.Error as exc:
                log.warning("singleton %s: cannot reach %s (%s); retrying", name,
                            redact(self.url), type(exc).__name__)
            except BaseException:
                if conn is not None:
                    with anyio.CancelScope(shield=True):
                        await conn.close()
                raise
            if conn is not None:
                with anyio.CancelScope(shield=True):
                    await conn.close()
            await anyio.sleep(self.retry_seconds)

    async def _watch(self, conn: psycopg.AsyncConnection[tuple[object, ...]]) -> str:
        """Return (why) once ``conn`` is gone; runs until cancelled otherwise."""
        while True:
            try:
                # Reading the socket for notifications between checks notices a connection
                # the server closed (terminated, restarting) at once; the query notices one
                # that went silent (a network cut).
                async for _ in conn.notifies(timeout=self.check_seconds):
                    pass
                with anyio.fail_after(max(self.check_seconds, 5.0)):
                    await conn.execute("SELECT 1")
            except TimeoutError:
                return "no answer"
            except psycopg.Error as exc:
                return type(exc).__name__
