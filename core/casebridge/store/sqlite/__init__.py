"""The embedded :class:`~casebridge.store.Store`: one SQLite file in WAL mode.

:class:`SqliteStore` composes the store's parts, each in its own module on one shared
:class:`~.db.Database` (the file, its writer and readers, the clock), as the PostgreSQL store
does: the conversation store (:mod:`.conversations`), the write log and plugin state
(:mod:`.writes`) and the job queue (:mod:`.jobs`, with its claim path in :mod:`.heads`).
:mod:`.db` states how reads, writes and commits are done.
"""

from __future__ import annotations

from pathlib import Path

from ...model import utcnow
from ..lifecycle import OnDatabase
from .conversations import Conversations
from .db import Clock, Database
from .jobs import JobQueue
from .raw_inbounds import RawInbounds
from .writes import PluginState, WriteLog

__all__ = ["SqliteStore"]


class SqliteStore(OnDatabase, Conversations, RawInbounds, WriteLog, PluginState, JobQueue):
    """A :class:`~casebridge.store.Store` in one SQLite file.

    ``clock`` gives every time the store writes and compares (leases, due jobs); inject one
    in tests. ``busy_timeout`` (seconds) bounds the wait for another process's write lock.
    ``durable_accept`` commits :meth:`accept_inbound` with ``synchronous=FULL``.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Clock = utcnow,
        busy_timeout: float = 30.0,
        durable_accept: bool = True,
    ) -> None:
        self.db = Database(path, clock=clock, busy_timeout=busy_timeout)
        self._durable_accept = durable_accept

    @property
    def path(self) -> Path:
        return self.db.path

