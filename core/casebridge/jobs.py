"""The pipeline's jobs, typed: one frozen dataclass per job kind, the one place that builds
their outbox records and reads them back.

A dataclass's fields are its job's payload, under the same names the payloads have always
had, so jobs already in a database decode unchanged. Reading is tolerant the way a stored
record needs: unknown keys are ignored, a field added later takes its default, and a payload
that lacks a required field (or holds the wrong type) is a :class:`PermanentError`, since no
retry can mend it. Each class's ``to_new_job`` states its idempotency key and order key:

* a session's jobs share the session id as their order key, so they run one at a time;
* an inbound's order key is its sender on its channel (it has no session yet);
* a reply's is its case, so a rep's replies go out in the order they arrived.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar, get_args, get_type_hints

from .errors import PermanentError
from .model import AddressKind, CrmEvent, HandoffDecision, Reply, derived_id
from .store import Job, NewJob

__all__ = [
    "JOB_TYPES",
    "AckJob",
    "AnswerJob",
    "AttachJob",
    "CloseJob",
    "ClosedJob",
    "HandoffJob",
    "InboundJob",
    "IngestJob",
    "ReplyJob",
    "Run",
    "SyncJob",
    "TypedJob",
    "UndeliveredJob",
    "crm_event_jobs",
    "decode",
    "session_of",
]

T = TypeVar("T", bound="TypedJob")


@dataclass(frozen=True, slots=True)
class Run:
    """What a handler may know of the outbox record it runs: the attempt (this one
    included), the budget (None: the outbox policy's), when the job was enqueued, and its
    trace id."""

    attempts: int
    max_attempts: int | None
    created_at: datetime
    trace_id: str = ""

    @classmethod
    def of(cls, job: Job) -> Run:
        return cls(job.attempts, job.max_attempts, job.created_at, job.trace_id)


class TypedJob:
    """The base of every job kind: ``kind`` names it in the outbox, the dataclass fields are
    its payload. Subclasses define ``to_new_job``."""

    __slots__ = ()
    kind: ClassVar[str]

    def payload(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        return {name: _to_json(value) for name, value in values.items()
                if value is not None}

    def _new(self, key: str, order_key: str = "", trace_id: str = "") -> NewJob:
        return NewJob(kind=self.kind, payload=self.payload(), key=key, order_key=order_key,
                      trace_id=trace_id)

    def to_new_job(self) -> NewJob:
        raise NotImplementedError

    @classmethod
    def from_payload(cls: type[T], payload: Mapping[str, Any]) -> T:
        """The job a stored payload holds; PermanentError when it cannot be one."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in payload and payload[f.name] is not None:
                values[f.name] = _from_json(cls, f.name, payload[f.name])
            elif f.default is dataclasses.MISSING:
                raise PermanentError(f"{cls.kind} job payload lacks {f.name!r}")
        return cls(**values)

    @classmethod
    def from_job(cls: type[T], job: Job) -> T:
        if job.kind != cls.kind:
            raise PermanentError(f"a {job.kind!r} job is not a {cls.kind!r} job")
        return cls.from_payload(job.payload)


def _to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@functools.cache
def _field_types(cls: type[TypedJob], name: str) -> frozenset[Any]:
    # Annotations are strings here: resolve each once, not on every decode.
    hint = get_type_hints(cls)[name]
    return frozenset(get_args(hint) or (hint,))


def _from_json(cls: type[TypedJob], name: str, value: Any) -> Any:
    types = _field_types(cls, name)
    try:
        if datetime in types:
            return datetime.fromisoformat(value)
        if AddressKind in types:
            return AddressKind(value)
    except (TypeError, ValueError):
        raise PermanentError(f"{cls.kind} job: {name!r} cannot be {value!r}") from None
    if not isinstance(value, str):
        raise PermanentError(f"{cls.kind} job: {name!r} must be a string, not {value!r}")
    return value


# -- a customer's message in ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboundJob(TypedJob):
    """Thread a stored inbound into a session and act on it. ``sender_kind`` is what the
    channel said the sender's address is; None only in jobs queued before it was recorded.
    ``channel`` and ``sender`` make the order key: one sender's messages in order."""

    kind: ClassVar[str] = "inbound"
    message_id: str
    trace_id: str = ""
    sender_kind: AddressKind | None = None
    channel: str = ""
    sender: str = ""

    def to_new_job(self) -> NewJob:
        return self._new(f"inbound:{self.message_id}",
                         f"from:{self.channel}:{self.sender.lower()}", self.trace_id)


@dataclass(frozen=True, slots=True)
class IngestJob(TypedJob):
    """Parse a raw inbound kept by ``receive_later`` (``raw_id`` names it in the store).
    ``channel`` and ``sender`` (the transport's sender) make the order key, so one sender's
    messages are parsed, and so threaded, in the order they came."""

    kind: ClassVar[str] = "ingest"
    raw_id: str
    trace_id: str = ""
    channel: str = ""
    sender: str = ""

    def to_new_job(self) -> NewJob:
        return self._new(f"ingest:{self.raw_id}",
                         f"raw:{self.channel}:{self.sender.lower()}", self.trace_id)


@dataclass(frozen=True, slots=True)
class AckJob(TypedJob):
    """Tell a new session's customer their first message (``in_reply_to``) arrived."""

    kind: ClassVar[str] = "ack"
    session_id: str
    in_reply_to: str
    trace_id: str = ""

    @property
    def delivered_message_id(self) -> str:
        return derived_id("ack", self.session_id)

    def to_new_job(self) -> NewJob:
        return self._new(f"ack:{self.session_id}", self.session_id, self.trace_id)


@dataclass(frozen=True, slots=True)
class AnswerJob(TypedJob):
    """Deliver the assistant's answer to the customer message ``in_reply_to``."""

    kind: ClassVar[str] = "answer"
    session_id: str
    text: str
    in_reply_to: str
    trace_id: str = ""

    @property
    def delivered_message_id(self) -> str:
        return derived_id("answer", self.in_reply_to)

    def to_new_job(self) -> NewJob:
        return self._new(f"answer:{self.in_reply_to}", self.session_id, self.trace_id)


# -- the case -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandoffJob(TypedJob):
    """Hand a session to a human: find or create its case. At most one per session."""

    kind: ClassVar[str] = "handoff"
    session_id: str
    reason: str
    source: str = ""
    trace_id: str = ""

    @classmethod
    def deciding(cls, session_id: str, decision: HandoffDecision,
                 trace_id: str = "") -> HandoffJob:
        return cls(session_id, decision.reason, decision.source, trace_id)

    @property
    def decision(self) -> HandoffDecision:
        return HandoffDecision(self.reason, self.source)

    def to_new_job(self) -> NewJob:
        return self._new(f"handoff:{self.session_id}", self.session_id, self.trace_id)


@dataclass(frozen=True, slots=True)
class SyncJob(TypedJob):
    """Write what the session's case lacks. ``cause`` (the message or event that asked for
    it) makes each cause sync once. ``decided_at``, on the sync that completes a handoff, is
    when the handoff was decided: the handoff latency is measured to the sync's end."""

    kind: ClassVar[str] = "sync"
    session_id: str
    trace_id: str = ""
    decided_at: datetime | None = None
    cause: str = ""

    def to_new_job(self) -> NewJob:
        return self._new(f"sync:{self.session_id}:{self.cause}", self.session_id,
                         self.trace_id)


@dataclass(frozen=True, slots=True)
class AttachJob(TypedJob):
    """Upload one stored attachment (by ``sha256``) of a message to the session's case."""

    kind: ClassVar[str] = "attach"
    session_id: str
    message_id: str
    sha256: str
    trace_id: str = ""

    def to_new_job(self) -> NewJob:
        return self._new(f"attach:{self.session_id}:{self.message_id}:{self.sha256}",
                         self.session_id, self.trace_id)


# -- what the CRM reported ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplyJob(TypedJob):
    """Store a rep's reply and deliver it on the session's channel."""

    kind: ClassVar[str] = "reply"
    crm: str
    activity_id: str
    case_id: str
    text: str
    html: str = ""
    author_name: str = ""
    trace_id: str = ""

    @classmethod
    def of(cls, reply: Reply, trace_id: str = "") -> ReplyJob:
        return cls(reply.crm, reply.activity_id, reply.case_id, reply.text, reply.html,
                   reply.author_name, trace_id)

    @property
    def reply(self) -> Reply:
        return Reply(crm=self.crm, activity_id=self.activity_id, case_id=self.case_id,
                     text=self.text, html=self.html, author_name=self.author_name)

    @property
    def delivered_message_id(self) -> str:
        return derived_id("reply", self.crm, self.activity_id)

    def to_new_job(self) -> NewJob:
        # Replies to one case go out in the order they arrived.
        return self._new(f"reply:{self.crm}:{self.activity_id}",
                         f"case:{self.crm}:{self.case_id}", self.trace_id)


@dataclass(frozen=True, slots=True)
class ClosedJob(TypedJob):
    """The CRM closed a case: its sessions close. Closing is idempotent, so each report may
    have its own job: ``event_id`` tells one report of a closure from another (a case
    reopened and closed again closes its sessions again)."""

    kind: ClassVar[str] = "closed"
    crm: str
    case_id: str
    event_id: str = ""
    trace_id: str = ""

    def to_new_job(self) -> NewJob:
        return self._new(f"closed:{self.crm}:{self.case_id}:{self.event_id}", "",
                         self.trace_id)


@dataclass(frozen=True, slots=True)
class CloseJob(TypedJob):
    """casebridge closes a session itself (the API, the CLI) and tells the CRM."""

    kind: ClassVar[str] = "close"
    session_id: str
    trace_id: str = ""

    def to_new_job(self) -> NewJob:
        return self._new(f"close:{self.session_id}", self.session_id, self.trace_id)


@dataclass(frozen=True, slots=True)
class UndeliveredJob(TypedJob):
    """A reply the channel sent was reported failed later (a status callback, a bounce):
    note it on the session and the case. ``session_id`` orders it with the session."""

    kind: ClassVar[str] = "undelivered"
    message_id: str
    session_id: str = ""

    def to_new_job(self) -> NewJob:
        return self._new(f"undelivered:{self.message_id}", self.session_id)


JOB_TYPES: Mapping[str, type[TypedJob]] = {
    cls.kind: cls
    for cls in (IngestJob, InboundJob, AckJob, AnswerJob, HandoffJob, SyncJob, AttachJob,
                ReplyJob, ClosedJob, CloseJob, UndeliveredJob)
}


def decode(job: Job) -> TypedJob:
    """The typed job an outbox record holds; PermanentError for an unknown kind or a payload
    no retry can mend."""
    cls = JOB_TYPES.get(job.kind)
    if cls is None:
        raise PermanentError(f"no job kind {job.kind!r}")
    return cls.from_payload(job.payload)


def session_of(job: Job) -> str:
    """The session a job works on, for a listing; "" when it names none (a reply names its
    case, a closed case its CRM record) or its payload cannot be read."""
    try:
        typed = decode(job)
    except PermanentError:
        return ""
    return str(getattr(typed, "session_id", ""))


def crm_event_jobs(events: Sequence[CrmEvent], trace_id: str, event_id: str = "") -> list[NewJob]:
    """The jobs that act on what a CRM reported, in the order it reported them: a rep's reply
    to deliver, a closed case whose sessions close. ``event_id`` tells one report of a
    closure from another (a webhook call); a poller that sees each closure once passes none."""
    jobs: list[NewJob] = []
    for event in events:
        if event.reply is not None:
            jobs.append(ReplyJob.of(event.reply, trace_id).to_new_job())
        elif event.kind == "case_closed":
            jobs.append(ClosedJob(event.crm, event.case_id, event_id, trace_id).to_new_job())
    return jobs
