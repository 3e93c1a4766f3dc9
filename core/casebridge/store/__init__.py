"""The durable store: what the pipeline, the outbox and plugins may ask of it.

The store holds contacts, sessions, messages, dropped inbounds, CRM write intents, plugin
state and the outbox's jobs. Its contract is split by user (:mod:`.protocols`): a
:class:`JobQueue` for the outbox, a :class:`ConversationStore` for threading, a
:class:`WriteLog` for CRM writes, a :class:`PluginStateStore` for plugins, and
:class:`Store`, their union, for whoever needs everything.

Every method is async and every write is one transaction. Uniqueness lives in the store,
never in memory: an inbound ``(channel, external_id)``, a job ``key`` and a CRM write
``(session_id, message_id, kind)`` each exist at most once, so several runner processes
sharing one database cannot duplicate work.

Times passed in must be timezone-aware; times given back are UTC. The embedded
implementation is :class:`casebridge.store.sqlite.SqliteStore`; the PostgreSQL one, for
several runners on one database, is :class:`casebridge.pgstore.PgStore`. Both build their
schema from one list of migrations (:mod:`.migrations`) and convert rows with one module
(:mod:`.rows`).
"""

from __future__ import annotations

from .protocols import ConversationStore, JobQueue, PluginStateStore, Store, WriteLog
from .records import (
    JOB_STATES,
    CrmWrite,
    CrmWriteKind,
    DroppedInbound,
    Job,
    JobState,
    NewJob,
    RecordNotFound,
    WriteIntent,
)

__all__ = [
    "JOB_STATES",
    "ConversationStore",
    "CrmWrite",
    "CrmWriteKind",
    "DroppedInbound",
    "Job",
    "JobQueue",
    "JobState",
    "NewJob",
    "PluginStateStore",
    "RecordNotFound",
    "Store",
    "WriteIntent",
    "WriteLog",
]
