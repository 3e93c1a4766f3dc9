"""The durable store's contract: what the pipeline, the outbox and plugins may ask of it.

One :class:`Store` holds contacts, sessions, messages, dropped inbounds, CRM write intents,
claimed CRM events, plugin state and the outbox's jobs. Every method is async and every
write is one transaction. Uniqueness lives in the store, never in memory: an inbound
``(channel, external_id)``, a job ``key``, a CRM write ``(session_id, message_id, kind)`` and a
CRM event ``(crm, event_id)`` each exist at most once, so several runner processes sharing
one database cannot duplicate work.

Times passed in must be timezone-aware; times given back are UTC. The embedded
implementation is :class:`casebridge.sqlite_store.SqliteStore`; the PostgreSQL one, for
several runners on one database, is :class:`casebridge.pgstore.PgStore`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable

from .model import CaseLink, Contact, Message, Session, SessionStatus

__all__ = [
    "JOB_STATES",
    "CrmWrite",
    "CrmWriteKind",
    "DroppedInbound",
    "Job",
    "JobState",
    "NewJob",
    "RecordNotFound",
    "Store",
]

JobState = Literal["pending", "running", "done", "dead"]
JOB_STATES: tuple[JobState, ...] = ("pending", "running", "done", "dead")
CrmWriteKind = Literal["case", "activity", "attachment"]


class RecordNotFound(LookupError):
    """An update named a record (contact, session, message, job, write) the store lacks."""


def _require_aware(name: str, value: datetime | None) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to enqueue.

    ``key`` is the idempotency key: enqueueing a key that already exists (in any state) does
    nothing. Jobs sharing a non-empty ``order_key`` run one at a time in enqueue order (a dead
    one no longer blocks the rest). ``run_at`` delays the first run; ``max_attempts`` overrides
    the outbox policy's budget; ``trace_id`` follows the work into logs (the outbox gives
    follow-ups their parent's trace id when they carry none). ``payload`` must be JSON-able.
    """

    kind: str
    payload: Mapping[str, Any]
    key: str
    order_key: str = ""
    run_at: datetime | None = None
    max_attempts: int | None = None
    trace_id: str = ""

    def __post_init__(self) -> None:
        if not self.kind:
            raise ValueError("NewJob.kind must not be empty")
        if not self.key:
            raise ValueError(f"NewJob.key must not be empty (job kind {self.kind!r})")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"NewJob.max_attempts must be >= 1, got {self.max_attempts}")
        _require_aware("NewJob.run_at", self.run_at)
        try:
            json.dumps(self.payload)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"NewJob.payload of job {self.key!r} is not JSON-serializable: {exc}"
            ) from None


@dataclass(frozen=True, slots=True)
class Job:
    """A job as the outbox sees it.

    ``attempts`` counts the claims so far, the current one included. ``max_attempts`` is None
    when the job uses the outbox policy's budget. ``lease_until`` and ``worker_id`` are set
    while it runs. ``last_error`` is kept through retries, death and replay.
    """

    id: int
    kind: str
    payload: dict[str, Any]
    key: str
    order_key: str
    state: JobState
    attempts: int
    max_attempts: int | None
    run_at: datetime
    lease_until: datetime | None
    worker_id: str
    last_error: str
    trace_id: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class CrmWrite:
    """The record of one CRM write, made before the call and completed after it.

    ``state`` is "intent" until :meth:`Store.record_written` stores the CRM's id. ``attempts``
    counts the :meth:`Store.record_intent` calls: an "intent" with ``attempts > 1`` means an
    earlier try may have reached the CRM, so look the record up before writing again.
    """

    key: str
    session_id: str
    message_id: str
    kind: CrmWriteKind
    crm: str
    crm_id: str = ""
    state: Literal["intent", "written"] = "intent"
    attempts: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def maybe_written(self) -> bool:
        """True when a previous attempt may have reached the CRM without being recorded."""
        return self.state == "intent" and self.attempts > 1


@dataclass(frozen=True, slots=True)
class DroppedInbound:
    """An inbound that reached no session (auto-reply, bounce, opt-out keyword...)."""

    channel: str
    external_id: str
    sender: str
    reason: str
    received_at: datetime
    recorded_at: datetime | None = None


@runtime_checkable
class Store(Protocol):
    """Everything casebridge keeps. See the module docstring for the guarantees."""

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Open the database and apply pending migrations."""

    async def close(self) -> None:
        """Close the database; safe to call twice."""

    async def ping(self) -> None:
        """Raise when the database cannot answer (for /readyz)."""

    # -- contacts ----------------------------------------------------------------------

    async def find_contact(self, emails: Sequence[str], phones: Sequence[str]) -> Contact | None:
        """The contact holding one of these addresses: the first known one wins, e-mails
        before phones, each in the order given. None when no address is known."""

    async def create_contact(self, contact: Contact) -> Contact:
        """Store a new contact with its addresses.

        Race-safe: when one of its addresses already belongs to a contact (or its id
        exists), nothing is written and that existing contact is returned instead.
        """

    async def add_contact_addresses(
        self, contact_id: str, emails: Sequence[str], phones: Sequence[str]
    ) -> Contact:
        """Give the contact these addresses too. An address it holds already is ignored;
        one that belongs to another contact is left there (addresses are unique). Raises
        :class:`RecordNotFound` for an unknown contact."""

    async def set_contact_crm_id(self, contact_id: str, crm_id: str) -> Contact:
        """Record the contact's id in the CRM."""

    async def get_contact(self, contact_id: str) -> Contact | None: ...

    # -- sessions ----------------------------------------------------------------------

    async def create_session(self, session: Session) -> Session:
        """Store a new session; its contact must exist. Returns it with the stored contact.
        Creating an id that exists returns the existing session unchanged."""

    async def get_session(self, session_id: str) -> Session | None: ...

    async def update_session(
        self,
        session_id: str,
        *,
        status: SessionStatus | None = None,
        case: CaseLink | None = None,
        subject: str | None = None,
    ) -> Session:
        """Change what is given (None leaves a field alone) and bump ``updated_at``."""

    async def find_open_session(
        self, channel: str, contact_id: str, channel_address: str, active_since: datetime
    ) -> Session | None:
        """The newest not-closed session of this contact on this channel and our address
        whose last message (or creation, before any) is later than ``active_since``."""

    async def find_session_by_external_ids(
        self, channel: str, external_ids: Sequence[str]
    ) -> Session | None:
        """The session holding the newest message of ``channel`` whose external id is one of
        ``external_ids`` (email threading by In-Reply-To/References). Unassigned messages
        do not count."""

    async def find_session_by_case(self, crm: str, case_id: str) -> Session | None:
        """The newest session linked to this CRM case."""

    async def sessions_by_case(self, crm: str, case_id: str) -> list[Session]:
        """Every session linked to this CRM case (case-append links several), newest first."""

    async def list_sessions(
        self, *, status: SessionStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[Session]:
        """Sessions, most recently updated first."""

    async def count_sessions(self, status: SessionStatus | None = None) -> int: ...

    async def session_ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        """Up to ``limit`` session ids that start with ``prefix``, in id order."""

    # -- messages ----------------------------------------------------------------------

    async def accept_inbound(self, message: Message, job: NewJob) -> bool:
        """Durably accept an inbound before it is acknowledged: store the message and
        enqueue ``job`` in one transaction. False (nothing written) when the message's
        ``(channel, external_id)`` or id is already stored. Commits with a full fsync."""

    async def add_message(self, message: Message) -> bool:
        """Store a message; False when its ``(channel, external_id)`` or id exists. A message
        with an empty ``external_id`` is never a duplicate by that key. A non-empty
        ``session_id`` counts as activity on that session."""

    async def get_message(self, message_id: str) -> Message | None: ...

    async def assign_message(self, message_id: str, session_id: str) -> Message:
        """Put the message in the session (idempotent for the same session). Raises
        ValueError when it already belongs to another session."""

    async def transcript(self, session_id: str) -> list[Message]:
        """The session's messages in the order they were stored."""

    async def last_message_at(self, session_id: str) -> datetime | None:
        """``received_at`` of the session's latest message, None before any."""

    # -- dropped inbounds --------------------------------------------------------------

    async def record_dropped(
        self, channel: str, external_id: str, sender: str, reason: str, received_at: datetime
    ) -> None:
        """Note an inbound that reached no session; a repeat ``(channel, external_id)`` is
        ignored."""

    async def list_dropped(self, limit: int = 100) -> list[DroppedInbound]:
        """The latest dropped inbounds, newest first."""

    # -- CRM writes and events ---------------------------------------------------------

    async def record_intent(
        self, session_id: str, message_id: str, kind: CrmWriteKind, crm: str, key: str
    ) -> CrmWrite:
        """Record that a CRM write is about to happen, or return the existing record for
        ``(session_id, message_id, kind)`` (its ``attempts`` bumped while still an intent).
        ``message_id`` is "" for the case itself; for attachments make it name the file
        (e.g. ``f"{message.id}/{attachment.sha256}"``)."""

    async def record_written(self, key: str, crm_id: str) -> None:
        """Record the CRM's id for the write ``key``. Repeating it with the same id is a
        no-op; a different id raises ValueError (two CRM records for one write)."""

    async def get_write(self, key: str) -> CrmWrite | None: ...

    async def claim_event(self, crm: str, event_id: str) -> bool:
        """True the first time this CRM event is claimed, False ever after."""

    # -- plugin state ------------------------------------------------------------------

    async def put_state(self, plugin: str, key: str, value: Any) -> None:
        """Store a JSON-able value (overwriting)."""

    async def get_state(self, plugin: str, key: str) -> Any | None: ...

    async def delete_state(self, plugin: str, key: str) -> None: ...

    async def compare_and_put_state(
        self, plugin: str, key: str, expected: Any | None, value: Any | None
    ) -> bool:
        """Atomically replace the value when it currently equals ``expected`` (None: absent).
        ``value`` None deletes. True when the swap happened."""

    # -- jobs --------------------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[NewJob]) -> None:
        """Add jobs in order; a job whose key exists already is skipped."""

    async def claim_job(
        self, worker_id: str, lease: timedelta, kinds: Sequence[str] | None = None
    ) -> Job | None:
        """Atomically take one runnable job: pending with ``run_at`` due, or running with an
        expired lease (its worker died), never while an earlier job of its ``order_key`` is
        pending or running. Oldest due first. Sets the lease and counts the attempt."""

    async def renew_lease(self, job_id: int, attempt: int, lease: timedelta) -> bool:
        """Extend a running job's lease from now; False when that claim no longer holds it."""

    async def complete_job(
        self, job_id: int, follow_ups: Sequence[NewJob] = (), *, attempt: int | None = None
    ) -> bool:
        """Mark the job done and enqueue ``follow_ups`` in the same transaction. With
        ``attempt``, only when that claim still holds the job. True when applied."""

    async def retry_job(
        self, job_id: int, run_at: datetime, error: str, *, attempt: int | None = None
    ) -> bool:
        """Put the job back to pending until ``run_at``, keeping ``error``."""

    async def kill_job(self, job_id: int, error: str, *, attempt: int | None = None) -> bool:
        """Dead-letter the job, keeping ``error``."""

    async def get_job(self, job_id: int) -> Job | None: ...

    async def list_jobs(self, state: JobState | None = None, limit: int = 100) -> list[Job]:
        """Jobs, newest first."""

    async def replay_dead(self, job_ids: Sequence[int] | None = None) -> int:
        """Re-queue dead jobs (all, or those named): pending, attempts 0, due now. Returns how
        many were re-queued."""

    async def job_counts(self) -> dict[str, int]:
        """Number of jobs in each state (every state present)."""

    async def next_run_at(self, kinds: Sequence[str] | None = None) -> datetime | None:
        """The earliest time a job (of ``kinds``, or any) may become claimable: a pending
        ``run_at`` (of jobs not waiting behind an earlier one of their order key) or a
        running job's lease end. None when nothing is pending or running."""
