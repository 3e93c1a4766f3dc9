"""The store's contract, split by who needs what.

* :class:`JobQueue`: the outbox's jobs (enqueue, claim with a lease, finish, replay).
* :class:`ConversationStore`: contacts, sessions, messages and dropped inbounds, what the
  pipeline threads and the dashboard shows.
* :class:`WriteLog`: the intent recorded before each CRM write and its outcome after it.
* :class:`PluginStateStore`: each plugin's own JSON key-value state.
* :class:`Store`: all four plus the lifecycle (open, close, ping, schema version); what a
  backend implements and what a caller needing everything (the runner, the CLI) holds.

A caller that uses one part is typed with that part, so what it may touch is visible in its
signature and a test can hand it a small fake. Guarantees common to every part are stated
in :mod:`casebridge.store`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from ..model import CaseLink, Contact, Message, RawInbound, Session, SessionStatus
from .records import (
    CrmWrite,
    CrmWriteKind,
    DroppedInbound,
    Job,
    JobState,
    NewJob,
    WriteIntent,
)

__all__ = ["ConversationStore", "JobQueue", "PluginStateStore", "Store", "WriteLog"]


@runtime_checkable
class JobQueue(Protocol):
    """The outbox's durable queue. A job ``key`` exists at most once; jobs sharing an
    ``order_key`` run one at a time in enqueue order; every finish is fenced by the claim's
    attempt number, so a worker whose lease expired cannot overwrite its successor."""

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
        """``complete_job`` then ``claim_job`` in one transaction: (whether the completion
        applied, the job claimed or None). The claim takes the due job of ``order_key``
        that may run next (the same conversation's next step, such as a follow-up just
        enqueued) before any older job; with none, it is ``claim_job``'s."""

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


@runtime_checkable
class ConversationStore(Protocol):
    """Who wrote, in which session, and what. An inbound ``(channel, external_id)`` is
    stored at most once; an address belongs to one contact."""

    # -- contacts ----------------------------------------------------------------------

    async def find_contact(self, emails: Sequence[str], phones: Sequence[str]) -> Contact | None:
        """The contact holding one of these addresses: the first known one wins, e-mails
        before phones, each in the order given. None when no address is known."""

    async def create_contact(self, contact: Contact) -> Contact:
        """Store a new contact with its addresses.

        Race-safe: when one of its addresses already belongs to a contact (or its id
        exists), nothing is written and that existing contact is returned instead.
        """

    async def set_contact_crm_id(self, contact_id: str, crm_id: str) -> Contact:
        """Record the contact's id in the CRM."""

    async def get_contact(self, contact_id: str) -> Contact | None: ...

    # -- sessions ----------------------------------------------------------------------

    async def create_session(self, session: Session, *, first_message: str = "") -> Session:
        """Store a new session; its contact must exist. Returns it with the stored contact.
        Creating an id that exists returns the existing session unchanged. With
        ``first_message``, that message is assigned to the session in the same transaction,
        as ``assign_message`` would (and raises as it would)."""

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

    async def accept_inbound(self, message: Message, job: NewJob, *, parsed_raw: str = ""
                             ) -> bool:
        """Durably accept an inbound before it is acknowledged: store the message and
        enqueue ``job`` in one transaction. False (nothing else written) when the message's
        ``(channel, external_id)`` or id is already stored. Commits with a full fsync.

        With ``parsed_raw``, the message was parsed from that kept raw inbound, which the
        same transaction lets go of (duplicate or not). No full fsync is needed then: until
        this commit is on disk the raw inbound is too, and is parsed again."""

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

    # -- raw inbounds, parsed later ------------------------------------------------------

    async def accept_raw(self, raw_id: str, raw: RawInbound, job: NewJob) -> None:
        """Durably keep a raw inbound under ``raw_id`` and enqueue ``job`` (the one that will
        parse it) in one transaction, committed with a full fsync: the transport may
        acknowledge once this returns. ValueError when ``raw_id`` is already kept."""

    async def get_raw(self, raw_id: str) -> RawInbound | None:
        """The raw inbound kept under ``raw_id``; None when there is none (parsed and let
        go, or never kept)."""

    async def delete_raw(self, raw_id: str) -> None:
        """Let go of a parsed raw inbound; nothing happens when it is already gone."""

    async def count_raw(self) -> int:
        """Raw inbounds kept and not yet parsed (the intake backlog)."""

    # -- dropped inbounds --------------------------------------------------------------

    async def record_dropped(
        self, channel: str, external_id: str, sender: str, reason: str, received_at: datetime
    ) -> None:
        """Note an inbound that reached no session; a repeat ``(channel, external_id)`` is
        ignored."""

    async def list_dropped(self, limit: int = 100) -> list[DroppedInbound]:
        """The latest dropped inbounds, newest first."""


@runtime_checkable
class WriteLog(Protocol):
    """CRM writes recorded before and after they happen, so a retried job (or another
    runner) never makes a second CRM record: ``(session_id, message_id, kind)`` and the
    write ``key`` each exist at most once."""

    async def record_intent(
        self, session_id: str, message_id: str, kind: CrmWriteKind, crm: str, key: str
    ) -> CrmWrite:
        """Record that a CRM write is about to happen, or return the existing record for
        ``(session_id, message_id, kind)`` (its ``attempts`` bumped while still an intent).
        ``message_id`` is "" for the case itself; for attachments make it name the file
        (e.g. ``f"{message.id}/{attachment.sha256}"``)."""

    async def record_intents(self, intents: Sequence[WriteIntent]) -> list[CrmWrite]:
        """:meth:`record_intent` for each of ``intents``, in one transaction (all or none);
        their records in the same order."""

    async def record_written(self, key: str, crm_id: str) -> None:
        """Record the CRM's id for the write ``key``. Repeating it with the same id is a
        no-op; a different id raises ValueError (two CRM records for one write)."""

    async def record_all_written(self, written: Sequence[tuple[str, str]]) -> None:
        """:meth:`record_written` for each ``(key, crm_id)``, in one transaction: all are
        recorded, or (when one raises) none."""

    async def get_write(self, key: str) -> CrmWrite | None: ...

    async def get_writes(self, keys: Sequence[str]) -> dict[str, CrmWrite]:
        """The records of those of ``keys`` the log holds, by key (one read)."""


@runtime_checkable
class PluginStateStore(Protocol):
    """JSON values under ``(plugin, key)``; each plugin sees only its own keys."""

    async def put_state(self, plugin: str, key: str, value: Any) -> None:
        """Store a JSON-able value (overwriting)."""

    async def get_state(self, plugin: str, key: str) -> Any | None: ...

    async def delete_state(self, plugin: str, key: str) -> None: ...

    async def compare_and_put_state(
        self, plugin: str, key: str, expected: Any | None, value: Any | None
    ) -> bool:
        """Atomically replace the value when it currently equals ``expected`` (None: absent).
        ``value`` None deletes. True when the swap happened."""


@runtime_checkable
class Store(ConversationStore, WriteLog, PluginStateStore, JobQueue, Protocol):
    """Everything casebridge keeps: the four parts and the database's lifecycle."""

    async def open(self) -> None:
        """Open the database and apply pending migrations."""

    async def close(self) -> None:
        """Close the database; safe to call twice."""

    async def ping(self) -> None:
        """Raise when the database cannot answer (for /readyz)."""

    async def schema_version(self) -> int:
        """The highest migration applied."""
