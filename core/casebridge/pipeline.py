"""What happens between a message arriving and a case being written, and back.

Every step is an outbox job (typed in :mod:`casebridge.jobs`), so each one survives a crash
and is retried on failure. The handlers live in modules named for what they do:

* ``ingest``      parse a raw inbound a transport kept with ``receive_later``, store the
                  message (or why it was dropped) and its ``inbound`` job (:mod:`.receiving`);
* ``inbound``     thread a stored message into a session, then hand off, let the assistant
                  answer, or (after handoff) sync it to the case (:mod:`.intake`);
* ``ack``         with ``[bridge] acknowledge``, tell a new session's customer we have it;
* ``answer``      deliver the assistant's answer on the session's channel;
* ``reply``       store a rep's reply and deliver it to the customer;
* ``undelivered`` a reply the channel sent was reported failed later (an SMS status
                  callback, a bounce): note it on the session and the case (:mod:`.replies`);
* ``handoff``     summarize, map fields, find the contact's open case or create one
                  (:mod:`.handoffs`);
* ``sync``        write every message of a handed-off session that the case lacks, in order;
* ``attach``      upload one stored attachment of a written message to the case
                  (:mod:`.case_sync`);
* ``closed``      mark the sessions of a closed case closed;
* ``close``       casebridge closes a session itself, and tells the CRM (:mod:`.closing`).

Jobs of one session share an ``order_key`` so they run one at a time, in order. Every
follow-up job has an idempotency key, so a job re-run after a crash enqueues nothing twice;
every CRM write records its intent first, so a re-run looks before it writes again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from .case_sync import CaseSync
from .closing import Closing
from .errors import PermanentError
from .handoffs import Handoffs
from .intake import Intake
from .jobs import (
    AckJob,
    AnswerJob,
    AttachJob,
    ClosedJob,
    CloseJob,
    HandoffJob,
    InboundJob,
    IngestJob,
    ReplyJob,
    Run,
    SyncJob,
    TypedJob,
    UndeliveredJob,
    decode,
)
from .receiving import Receiving
from .replies import Replies
from .store import Job, NewJob

if TYPE_CHECKING:
    from .bridge import Bridge

J = TypeVar("J", bound=TypedJob)
Handler = Callable[[Job], Awaitable[list[NewJob]]]


def typed(cls: type[J], handler: Callable[[J, Run], Awaitable[list[NewJob]]]) -> Handler:
    """An outbox handler that gives ``handler`` the job decoded as ``cls`` and its run."""

    async def run(job: Job) -> list[NewJob]:
        return await handler(cls.from_job(job), Run.of(job))

    return run


class Pipeline:
    """Every job handler of one runner, by job kind."""

    def __init__(self, bridge: Bridge) -> None:
        self.receiving = Receiving(bridge)
        self.intake = Intake(bridge)
        self.replies = Replies(bridge)
        self.case_sync = CaseSync(bridge)
        self.handoffs = Handoffs(bridge, self.case_sync)
        self.closing = Closing(bridge)

    @property
    def handlers(self) -> Mapping[str, Handler]:
        return {
            "ingest": typed(IngestJob, self.receiving.on_ingest),
            "inbound": typed(InboundJob, self.intake.on_inbound),
            "ack": typed(AckJob, self.replies.on_ack),
            "answer": typed(AnswerJob, self.replies.on_answer),
            "reply": typed(ReplyJob, self.replies.on_reply),
            "undelivered": typed(UndeliveredJob, self.replies.on_undelivered),
            "handoff": typed(HandoffJob, self.handoffs.on_handoff),
            "sync": typed(SyncJob, self.case_sync.on_sync),
            "attach": typed(AttachJob, self.case_sync.on_attach),
            "closed": typed(ClosedJob, self.closing.on_closed),
            "close": typed(CloseJob, self.closing.on_close),
        }

    async def on_dead(self, job: Job, error: str) -> None:
        """A job was dead-lettered: a delivery job's reply is failed, and the case says so."""
        try:
            typed_job = decode(job)
        except PermanentError:
            return  # a payload no handler could read delivered nothing
        await self.replies.on_dead(typed_job, error)
