"""Messages to the customer: the acknowledgement, the assistant's answer and a rep's reply,
each stored in the session and delivered on the session's channel with its delivery state
tracked; and what happens when a delivery fails, at once or later.

A reply goes to the address the customer last wrote from in the session, on the session's
channel: the core never chooses among a contact's addresses by what they look like.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from . import deliveries
from .deliveries import ReplyState
from .delivery_log import DeliveryLog
from .errors import PermanentError
from .jobs import (
    AckJob,
    AnswerJob,
    ReplyJob,
    Run,
    SyncJob,
    TypedJob,
    UndeliveredJob,
)
from .logs import log_context
from .model import (
    Author,
    Delivery,
    DeliveryState,
    Direction,
    Message,
    Session,
    SessionStatus,
    derived_id,
)
from .stages import Stage
from .store import NewJob

if TYPE_CHECKING:
    from .bridge import Bridge

log = logging.getLogger(__name__)


def reply_address(session: Session, transcript: Sequence[Message]) -> str:
    """The address a message to the session's customer goes to: the one they last wrote
    from in it."""
    for message in reversed(transcript):
        if message.direction is Direction.INBOUND and message.author is Author.CUSTOMER:
            return message.sender
    raise PermanentError(f"session {session.id} has no customer message to answer")


def outbound_message(
    session: Session, *, recipient: str, message_id: str, author: Author, text: str,
    html: str = "", trace_id: str = "", external_id: str = "", sender: str = "",
) -> Message:
    """A message from us in ``session`` to ``recipient``, sent from the session's channel
    address unless ``sender`` says otherwise."""
    return Message(
        id=message_id,
        channel=session.channel,
        direction=Direction.OUTBOUND,
        author=author,
        external_id=external_id or f"casebridge:{message_id}",
        sender=sender or session.channel_address,
        recipients=(recipient,),
        text=text,
        original_text=text,
        html=html,
        subject=session.subject,
        session_id=session.id,
        trace_id=trace_id,
    )


def delivered_message_id(job: TypedJob) -> str:
    """The id of the message a delivery job sends ("" for other kinds)."""
    if isinstance(job, AckJob | AnswerJob | ReplyJob):
        return job.delivered_message_id
    return ""


class Replies(Stage):
    """The ``ack``, ``answer``, ``reply`` and ``undelivered`` jobs."""

    def __init__(self, bridge: Bridge) -> None:
        super().__init__(bridge)
        self.delivery_log = DeliveryLog(bridge.store, bridge.hooks)

    async def reply_address(self, session: Session) -> str:
        return reply_address(session, await self.store.transcript(session.id))

    async def on_ack(self, job: AckJob, run: Run) -> list[NewJob]:
        """Tell the customer their first message arrived, on the session's channel."""
        session = await self.session(job.session_id)
        with log_context(session_id=session.id, trace_id=job.trace_id):
            received = await self.store.get_message(job.in_reply_to)
            if received is None:
                raise PermanentError(f"message {job.in_reply_to} is not in the store")
            message = outbound_message(
                session, recipient=received.sender, message_id=job.delivered_message_id,
                author=Author.SYSTEM, trace_id=job.trace_id,
                text=self.bridge.templates.acknowledgement(session, received),
            )
            return await self.deliver(session, message, run)

    async def on_answer(self, job: AnswerJob, run: Run) -> list[NewJob]:
        session = await self.session(job.session_id)
        with log_context(session_id=session.id, trace_id=job.trace_id):
            if session.status is not SessionStatus.ASSISTANT:
                log.info("assistant answer dropped: the session was handed off meanwhile")
                return []
            message = outbound_message(
                session, recipient=await self.reply_address(session),
                message_id=job.delivered_message_id, author=Author.ASSISTANT,
                text=job.text, trace_id=job.trace_id,
            )
            return await self.deliver(session, message, run)

    async def on_reply(self, job: ReplyJob, run: Run) -> list[NewJob]:
        reply = job.reply
        session = await self.store.find_session_by_case(reply.crm, reply.case_id)
        if session is None:
            log.info("reply on case %s, which no session holds: ignored", reply.case_id)
            return []
        with log_context(session_id=session.id, trace_id=job.trace_id):
            message = outbound_message(
                session, recipient=await self.reply_address(session),
                message_id=job.delivered_message_id, author=Author.AGENT,
                text=reply.text, html=reply.html, trace_id=job.trace_id,
            )
            message = replace(message, sender_name=reply.author_name)
            # The activity is the rep's own: the case already has it.
            key = derived_id("activity", session.id, message.id)
            await self.store.record_intent(session.id, message.id, "activity", reply.crm, key)
            await self.store.record_written(key, reply.activity_id)
            return await self.deliver(session, message, run)

    async def deliver(self, session: Session, message: Message, run: Run) -> list[NewJob]:
        """Store ``message`` in the session and send it, tracking its delivery state.

        A refusal or permanent failure is recorded on the session (and so on the case)
        instead of being retried; so is a transient failure on the job's last attempt, so
        the rep learns the customer did not get the reply rather than the job dying quietly.
        """
        await self.store.add_message(message)
        stored = await self.store.get_message(message.id) or message
        await deliveries.report(self.store, stored.id, ReplyState.QUEUED)
        transcript = await self.store.transcript(session.id)
        try:
            # At most once, however often this job runs: see delivery_log.
            delivery = await self.delivery_log.deliver(session, stored, transcript)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if run.attempts < self.budget(run):
                await deliveries.report(self.store, stored.id, ReplyState.QUEUED,
                                        f"attempt {run.attempts} failed, will retry: {reason}")
                raise
            delivery = Delivery(DeliveryState.FAILED,
                                detail=f"gave up after {run.attempts} attempts: {reason}")
        self.bridge.metrics.replies_delivered.labels(
            channel=session.channel, state=delivery.state.value
        ).inc()
        await deliveries.report(self.store, stored.id, ReplyState(delivery.state.value),
                                delivery.detail, delivery.external_id)
        if delivery.state is not DeliveryState.SENT:
            return await self.record_failure(session, stored, delivery)
        if session.status is SessionStatus.HANDED_OFF and stored.author is not Author.AGENT:
            return [SyncJob(session.id, stored.trace_id, cause=stored.id).to_new_job()]
        return []

    async def record_failure(
        self, session: Session, message: Message, delivery: Delivery
    ) -> list[NewJob]:
        """A note in the session that ``message`` did not reach the customer, synced to the
        case when there is one."""
        log.warning("delivery %s: %s", delivery.state.value, delivery.detail)
        note = outbound_message(
            session,
            recipient=message.recipients[0] if message.recipients else "",
            message_id=derived_id("delivery", message.id),
            author=Author.SYSTEM,
            text=(f"The {message.author.value}'s reply was not delivered to the customer "
                  f"({delivery.state.value}): {delivery.detail}"),
            trace_id=message.trace_id,
        )
        await self.store.add_message(note)
        if session.status is SessionStatus.HANDED_OFF:
            return [SyncJob(session.id, message.trace_id, cause=note.id).to_new_job()]
        return []

    async def on_dead(self, job: TypedJob, error: str) -> None:
        """A delivery job died (a runner died during its last attempt, or an error it could
        not turn into a delivery): its reply is failed, and the case says so."""
        message_id = delivered_message_id(job)
        message = await self.store.get_message(message_id) if message_id else None
        if message is None or not message.session_id:
            return
        current = await deliveries.get(self.store, message.id)
        if current is not None and current.state is not ReplyState.QUEUED:
            return  # it went out (or failed and was said so) before the job died
        record = await deliveries.report(self.store, message.id, ReplyState.FAILED,
                                         f"its outbox job died: {error}")
        if record is not None and record.state is ReplyState.FAILED:
            await self.bridge.enqueue(undelivered_job(message))

    async def on_undelivered(self, job: UndeliveredJob, run: Run) -> list[NewJob]:
        message = await self.store.get_message(job.message_id)
        if message is None or not message.session_id:
            raise PermanentError(f"reply {job.message_id} is not in a session")
        session = await self.session(message.session_id)
        record = await deliveries.get(self.store, message.id)
        if record is None or record.state not in (ReplyState.FAILED, ReplyState.REFUSED):
            return []
        with log_context(session_id=session.id, trace_id=message.trace_id):
            delivery = Delivery(DeliveryState(record.state.value), record.external_id,
                                record.detail)
            return await self.record_failure(session, message, delivery)


def undelivered_job(message: Message) -> NewJob:
    """The job that notes a reply's failure, learned after it was sent."""
    return UndeliveredJob(message.id, message.session_id).to_new_job()
