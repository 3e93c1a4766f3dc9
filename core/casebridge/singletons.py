"""Services that run on exactly one runner at a time: ``Service(..., singleton=True)``.

Several ``casebridge run`` processes on one PostgreSQL all start every service, but a
poller such as the Creatio reconciliation poll must not run in each of them: N runners
would poll N times and race each other over the same watermark. The runner wraps such a
service in :func:`run_singleton`, which waits for the service's lock, runs the service
while it holds the lock, and waits again if the lock is lost.

Who holds the lock is decided by the store's database, not by the runners talking to each
other: on PostgreSQL a session-level advisory lock on a connection of its own
(:mod:`casebridge.pgstore.locks`), so a runner that dies (SIGKILL, a lost host) loses its
connection, the server releases the lock, and a waiting runner takes it within its retry
interval. On SQLite there is one runner, and :class:`LocalLocks` runs the service at once.

What a singleton may still see: a holder cut off from the database keeps running until
its next check notices (a few seconds), so a singleton's work must stay safe to repeat
(the reconciliation poll is: the replies and closures it finds become jobs keyed by the
activity or case, which the store enqueues once).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
from anyio.abc import TaskStatus

from .config import Config
from .contributions import Service

__all__ = ["LocalLocks", "LockLost", "SingletonLocks", "locks_for", "run_singleton"]

log = logging.getLogger(__name__)

# After a singleton service fails, how long before this runner competes for it again.
_RESTART_SECONDS = 5.0


class LockLost(Exception):
    """The connection holding a singleton's lock dropped: another runner may hold it now."""


class SingletonLocks(Protocol):
    """Runs a body while holding a named lock that at most one runner holds at a time."""

    async def run_exclusively(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Wait until this runner holds ``name``, then run ``body`` and release the lock
        when it returns. Raises :class:`LockLost` (``body`` cancelled) when the lock is
        lost while ``body`` runs."""
        ...


class LocalLocks:
    """One runner (SQLite): every singleton runs here, at once."""

    async def run_exclusively(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        await body()


def locks_for(config: Config) -> SingletonLocks:
    """Advisory locks on the PostgreSQL store of ``config``; local ones on SQLite."""
    if config.store.url is None:
        return LocalLocks()
    from .pgstore.locks import AdvisoryLocks

    return AdvisoryLocks(config.store.url.reveal())


async def run_singleton(
    service: Service,
    locks: SingletonLocks,
    *,
    task_status: TaskStatus[Any] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``service`` whenever this runner holds its lock, until cancelled.

    Reports started at once: the runner is ready whether or not it holds the lock. A lost
    lock cancels the service; a service that fails is logged. Either way this runner
    competes for the lock again after a pause, so another runner may take it first.
    """
    task_status.started()

    async def body() -> None:
        log.info("singleton %s runs on this runner", service.name)
        # The runner already counts this service as started (above): its own report is moot.
        await service.run(task_status=anyio.TASK_STATUS_IGNORED)  # type: ignore[call-arg]

    while True:
        try:
            await locks.run_exclusively(service.name, body)
        except LockLost as exc:
            # Paused like a failure: a runner whose connection just dropped leaves the
            # lock to the others first.
            log.warning("singleton %s stopped here: %s; competing for it again in %.0f s",
                        service.name, exc, _RESTART_SECONDS)
        except Exception:
            log.exception("singleton %s failed; competing for it again in %.0f s",
                          service.name, _RESTART_SECONDS)
        else:
            log.info("singleton %s finished", service.name)
            return
        await anyio.sleep(_RESTART_SECONDS)
