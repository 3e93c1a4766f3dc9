"""The PostgreSQL :class:`~casebridge.store.Store`, for several runners on one database.

:class:`PgStore` composes the store's parts, each in its own module on one shared
:class:`~casebridge.pgstore.db.Database` (pool, clock): the conversation store
(:mod:`.conversations`), the write log and plugin state (:mod:`.writes`) and the job queue
(:mod:`.jobs`). The schema comes from the one list of migrations both backends share
(:mod:`casebridge.store.migrations`), applied by :mod:`.migrate`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..model import utcnow
from ..store.lifecycle import OnDatabase
from .conversations import Conversations
from .db import Database, redact
from .jobs import JobQueue
from .notify import listen_for_jobs
from .raw_inbounds import RawInbounds
from .writes import PluginState, WriteLog

__all__ = ["PgStore", "redact"]


class PgStore(OnDatabase, Conversations, RawInbounds, WriteLog, PluginState, JobQueue):
    """A :class:`~casebridge.store.Store` on PostgreSQL at ``url``.

    ``clock`` gives every time the store writes and compares (inject one in tests); all
    runners sharing a database must have agreeing clocks, as on SQLite.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], datetime] = utcnow,
        max_connections: int = 10,
    ) -> None:
        self.db = Database(url, clock=clock, max_connections=max_connections)

    async def listen_jobs(self, wake: Callable[[int | None], None]) -> None:
        """Call ``wake`` whenever any process enqueues or frees jobs (until cancelled), with
        how many became runnable (None: unknown)."""
        await listen_for_jobs(self.db.url, wake)
