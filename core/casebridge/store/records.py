"""The values the store takes and gives back besides the model's own (contacts, sessions,
messages): jobs, CRM write records and dropped inbounds, and the error for a missing record.
Pure: no I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

__all__ = [
    "JOB_STATES",
    "CrmWrite",
    "CrmWriteKind",
    "DroppedInbound",
    "Job",
    "JobState",
    "NewJob",
    "RecordNotFound",
    "WriteIntent",
    "check_written",
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

    ``state`` is "intent" until :meth:`WriteLog.record_written` stores the CRM's id. ``attempts``
    counts the :meth:`WriteLog.record_intent` calls: an "intent" with ``attempts > 1`` means an
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
class WriteIntent:
    """One CRM write about to happen, as :meth:`WriteLog.record_intents` takes it (the
    arguments of :meth:`WriteLog.record_intent`)."""

    session_id: str
    message_id: str
    kind: CrmWriteKind
    crm: str
    key: str

    def check(self) -> None:
        """Raise ValueError for what no store accepts (checked before any is written)."""
        if self.kind not in ("case", "activity", "attachment"):
            raise ValueError(
                f"CRM write kind must be case, activity or attachment, not {self.kind!r}")
        if not self.key or not self.session_id or not self.crm:
            raise ValueError("record_intent needs a key, a session_id and a crm")


def check_written(written: Sequence[tuple[str, str]]) -> None:
    """Raise ValueError when a ``(key, crm_id)`` to record has no CRM id."""
    for key, crm_id in written:
        if not crm_id:
            raise ValueError(f"record_written({key!r}): crm_id must not be empty")


@dataclass(frozen=True, slots=True)
class DroppedInbound:
    """An inbound that reached no session (auto-reply, bounce, opt-out keyword...)."""

    channel: str
    external_id: str
    sender: str
    reason: str
    received_at: datetime
    recorded_at: datetime | None = None
