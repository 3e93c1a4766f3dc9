"""What happens between a message arriving and a case being written, and back.

Every step is an outbox job, so each one survives a crash and is retried on failure:

* ``inbound``   thread a stored message into a session, then hand off, let the assistant
                answer, or (after handoff) sync it to the case;
* ``answer``    deliver the assistant's answer on the session's channel;
* ``handoff``   summarize, map fields, find the contact's open case or create one;
* ``sync``      write every message of a handed-off session that the case lacks, in order;
* ``attach``    upload one stored attachment of a written message to the case;
* ``reply``     store a rep's reply and deliver it to the customer;
* ``closed``    mark the sessions of a closed case closed;
* ``close``     casebridge closes a session itself, and tells the CRM (``resolve_case``);
* ``ack``       with ``[bridge] acknowledge``, tell a new session's customer we have it.
* ``undelivered`` a reply the channel sent was reported failed later (an SMS status
                callback, a bounce): note it on the session and the case.

Jobs of one session share an ``order_key`` so they run one at a time, in order. Every
follow-up job has an idempotency key, so a job re-run after a crash enqueues nothing twice;
every CRM write records its intent first, so a re-run looks before it writes again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio

from . import deliveries
from .blobs import blob_path
from .deliveries import ReplyState
from .errors import PermanentError, PluginError
from .logs import log_context
from .model import (
    ActivityRequest,
    AttachmentRequest,
    Author,
    CaseLink,
    CaseRef,
    CaseRequest,
    Contact,
    CrmEvent,
    Delivery,
    DeliveryState,
    Direction,
    HandoffDecision,
    HandoffRequest,
    Message,
    Reply,
    Session,
    SessionStatus,
    derived_id,
    utcnow,
)
from .store import Job, NewJob

if TYPE_CHECKING:
    from .bridge import Bridge

log = logging.getLogger(__name__)


def is_email(address: str) -> bool:
    return "@" in address


def contact_addresses(address: str) -> tuple[list[str], list[str]]:
    """(emails, phones) for one sender address."""
    return ([address.lower()], []) if is_email(address) else ([], [address])


class Pipeline:
    """The job handlers. Holds no state of its own: everything lives in the store."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.store = bridge.store
        self.hooks = bridge.hooks
        self.crm = bridge.config.bridge.crm
        self.acknowledge = bridge.config.bridge.acknowledge

    @property
    def handlers(self) -> dict[str, Any]:
        return {
            "inbound": self.on_inbound,
            "answer": self.on_answer,
            "handoff": self.on_handoff,
            "sync": self.on_sync,
            "attach": self.on_attach,
            "reply": self.on_reply,
            "closed": self.on_closed,
            "close": self.on_close,
            "ack": self.on_ack,
            "undelivered": self.on_undelivered,
        }

    # -- jobs -----------------------------------------------------------------------------

    @staticmethod
    def handoff_job(session_id: str, decision: HandoffDecision, trace_id: str = "") -> NewJob:
        return NewJob(
            kind="handoff",
            payload={"session_id": session_id, "reason": decision.reason,
                     "source": decision.source, "trace_id": trace_id},
            key=f"handoff:{session_id}",
            order_key=session_id,
        )

    @staticmethod
    def sync_job(
        session_id: str, cause: str, trace_id: str = "", decided_at: datetime | None = None
    ) -> NewJob:
        """Write what the case lacks. ``decided_at``, on the sync that completes a handoff,
        is when the handoff was decided: the handoff latency is measured to its end."""
        payload = {"session_id": session_id, "trace_id": trace_id}
        if decided_at is not None:
            payload["decided_at"] = decided_at.isoformat()
        return NewJob(kind="sync", payload=payload, key=f"sync:{session_id}:{cause}",
                      order_key=session_id)

    def _handoff_done(self, decided_at: datetime) -> None:
        # The case and its first activity are written: the rep can start.
        self.bridge.metrics.handoff_latency.observe((utcnow() - decided_at).total_seconds())

    # -- inbound --------------------------------------------------------------------------

    async def on_inbound(self, job: Job) -> list[NewJob]:
        message = await self.store.get_message(job.payload["message_id"])
        if message is None:
            raise PermanentError(f"message {job.payload['message_id']} is not in the store")
        with log_context(trace_id=message.trace_id):
            if not message.session_id:
                session = await self.thread(message)
                message = await self.store.assign_message(message.id, session.id)
            session = await self._session(message.session_id)
            with log_context(session_id=session.id):
                acknowledge = ack_job(session, message) if self.acknowledge else []
                if session.status is not SessionStatus.ASSISTANT:
                    # Handed off: the case gets this message at once.
                    return [self.sync_job(session.id, message.id, message.trace_id)]
                return acknowledge + await self.assistant_step(session, message)

    async def thread(self, message: Message) -> Session:
        """Find the session a new inbound belongs to, or start one."""
        contact = await self.contact_for(message)
        candidate = await self._hinted_session(message)
        if candidate is not None and self._agrees(candidate, contact):
            return candidate
        idle = timedelta(hours=self.bridge.config.bridge.session_idle_hours)
        channel_address = message.recipients[0] if message.recipients else ""
        session = await self.store.find_open_session(
            message.channel, contact.id, channel_address, utcnow() - idle
        )
        if session is not None:
            return session
        session = Session(
            id=derived_id("session", message.channel, message.external_id),
            channel=message.channel,
            contact=contact,
            status=SessionStatus.ASSISTANT,
            channel_address=channel_address,
            subject=message.subject,
        )
        log.info("new session %s on %s", session.id, session.channel)
        return await self.store.create_session(session)

    async def _hinted_session(self, message: Message) -> Session | None:
        # A verified reply token first, then our own Message-IDs in the thread references.
        hinted = message.meta.get("session_hint", "")
        session = await self.store.get_session(hinted) if hinted else None
        if session is None and message.thread_refs:
            session = await self.store.find_session_by_external_ids(
                message.channel, list(message.thread_refs)
            )
        if session is None or session.status is SessionStatus.CLOSED:
            return None
        return session

    @staticmethod
    def _agrees(session: Session, contact: Contact) -> bool:
        # A header can be forged or forwarded: it only counts when the sender is the
        # session's customer.
        return session.contact.id == contact.id

    async def contact_for(self, message: Message) -> Contact:
        emails, phones = contact_addresses(message.sender)
        contact = await self.store.find_contact(emails, phones)
        if contact is not None:
            return contact
        return await self.store.create_contact(
            Contact(
                id=derived_id("contact", message.sender.lower()),
                name=message.sender_name,
                emails=tuple(emails),
                phones=tuple(phones),
            )
        )

    async def assistant_step(self, session: Session, message: Message) -> list[NewJob]:
        transcript = await self.store.transcript(session.id)
        decision = await self.hooks.handoff_policy(session, transcript)
        if decision is None:
            turn = await self.hooks.assistant_turn(session, transcript)
            if turn is not None and turn.handoff is not None:
                decision = turn.handoff
            elif turn is not None and turn.answer:
                return [
                    NewJob(
                        kind="answer",
                        payload={"session_id": session.id, "text": turn.answer,
                                 "in_reply_to": message.id, "trace_id": message.trace_id},
                        key=f"answer:{message.id}",
                        order_key=session.id,
                    )
                ]
        if decision is None:
            return []
        log.info("handoff decided: %s", decision.reason)
        return [self.handoff_job(session.id, decision, message.trace_id)]

    # -- outbound -------------------------------------------------------------------------

    async def on_ack(self, job: Job) -> list[NewJob]:
        """Tell the customer their first message arrived, on the session's channel."""
        session = await self._session(job.payload["session_id"])
        with log_context(session_id=session.id, trace_id=job.payload.get("trace_id", "")):
            received = await self.store.get_message(job.payload["in_reply_to"])
            if received is None:
                raise PermanentError(f"message {job.payload['in_reply_to']} is not in the store")
            message = self.outbound_message(
                session, message_id=derived_id("ack", session.id), author=Author.SYSTEM,
                text=self.bridge.templates.acknowledgement(session, received),
                trace_id=job.payload.get("trace_id", ""),
            )
            return await self.deliver(session, message, job)

    async def on_answer(self, job: Job) -> list[NewJob]:
        session = await self._session(job.payload["session_id"])
        with log_context(session_id=session.id, trace_id=job.payload.get("trace_id", "")):
            if session.status is not SessionStatus.ASSISTANT:
                log.info("assistant answer dropped: the session was handed off meanwhile")
                return []
            message = self.outbound_message(
                session,
                message_id=derived_id("answer", job.payload["in_reply_to"]),
                author=Author.ASSISTANT,
                text=job.payload["text"],
                trace_id=job.payload.get("trace_id", ""),
            )
            return await self.deliver(session, message, job)

    def outbound_message(
        self, session: Session, *, message_id: str, author: Author, text: str,
        html: str = "", trace_id: str = "", external_id: str = "", sender: str = "",
    ) -> Message:
        # Answer on the kind of address the session came in on: an SMS session goes to the
        # contact's phone even when the contact also has an email address.
        contact = session.contact
        ordered = (contact.phones + contact.emails
                   if session.channel_address and not is_email(session.channel_address)
                   else contact.emails + contact.phones)
        recipient = next(iter(ordered), "")
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

    async def deliver(self, session: Session, message: Message, job: Job) -> list[NewJob]:
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
            delivery = await self.hooks.deliver_reply(session.channel, session, stored,
                                                      transcript)
        except PermanentError as exc:
            delivery = Delivery(DeliveryState.FAILED, detail=str(exc))
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if job.attempts < self._budget(job):
                await deliveries.report(self.store, stored.id, ReplyState.QUEUED,
                                        f"attempt {job.attempts} failed, will retry: {reason}")
                raise
            delivery = Delivery(DeliveryState.FAILED,
                                detail=f"gave up after {job.attempts} attempts: {reason}")
        self.bridge.metrics.replies_delivered.labels(
            channel=session.channel, state=delivery.state.value
        ).inc()
        await deliveries.report(self.store, stored.id, ReplyState(delivery.state.value),
                                delivery.detail, delivery.external_id)
        follow_ups: list[NewJob] = []
        if delivery.state is not DeliveryState.SENT:
            follow_ups += await self.record_failure(session, stored, delivery)
        elif session.status is SessionStatus.HANDED_OFF and stored.author is not Author.AGENT:
            follow_ups.append(self.sync_job(session.id, stored.id, stored.trace_id))
        return follow_ups

    def _budget(self, job: Job) -> int:
        return job.max_attempts or self.bridge.config.outbox.max_attempts

    async def record_failure(
        self, session: Session, message: Message, delivery: Delivery
    ) -> list[NewJob]:
        log.warning("delivery %s: %s", delivery.state.value, delivery.detail)
        note = self.outbound_message(
            session,
            message_id=derived_id("delivery", message.id),
            author=Author.SYSTEM,
            text=(f"The {message.author.value}'s reply was not delivered to the customer "
                  f"({delivery.state.value}): {delivery.detail}"),
            trace_id=message.trace_id,
        )
        await self.store.add_message(note)
        if session.status is SessionStatus.HANDED_OFF:
            return [self.sync_job(session.id, note.id, message.trace_id)]
        return []

    @staticmethod
    def delivered_message_id(job: Job) -> str:
        """The id of the message a delivery job sends ("" for other kinds)."""
        payload = job.payload
        if job.kind == "reply":
            return derived_id("reply", payload["crm"], payload["activity_id"])
        if job.kind == "answer":
            return derived_id("answer", payload["in_reply_to"])
        if job.kind == "ack":
            return derived_id("ack", payload["session_id"])
        return ""

    async def on_dead(self, job: Job, error: str) -> None:
        """A delivery job died (a runner died during its last attempt, or an error it could
        not turn into a delivery): its reply is failed, and the case says so."""
        message_id = self.delivered_message_id(job)
        message = await self.store.get_message(message_id) if message_id else None
        if message is None or not message.session_id:
            return
        current = await deliveries.get(self.store, message.id)
        if current is not None and current.state is not ReplyState.QUEUED:
            return  # it went out (or failed and was said so) before the job died
        record = await deliveries.report(self.store, message.id, ReplyState.FAILED,
                                         f"its outbox job died: {error}")
        if record is not None and record.state is ReplyState.FAILED:
            await self.bridge.enqueue(self.undelivered_job(message))

    @staticmethod
    def undelivered_job(message: Message) -> NewJob:
        return NewJob(kind="undelivered", payload={"message_id": message.id},
                      key=f"undelivered:{message.id}", order_key=message.session_id)

    async def on_undelivered(self, job: Job) -> list[NewJob]:
        message = await self.store.get_message(job.payload["message_id"])
        if message is None or not message.session_id:
            raise PermanentError(f"reply {job.payload['message_id']} is not in a session")
        session = await self._session(message.session_id)
        record = await deliveries.get(self.store, message.id)
        if record is None or record.state not in (ReplyState.FAILED, ReplyState.REFUSED):
            return []
        with log_context(session_id=session.id, trace_id=message.trace_id):
            delivery = Delivery(DeliveryState(record.state.value), record.external_id,
                                record.detail)
            return await self.record_failure(session, message, delivery)

    # -- handoff --------------------------------------------------------------------------

    async def on_handoff(self, job: Job) -> list[NewJob]:
        session = await self._session(job.payload["session_id"])
        trace_id = job.payload.get("trace_id", "")
        with log_context(session_id=session.id, trace_id=trace_id):
            if session.status is SessionStatus.CLOSED:
                log.info("handoff skipped: the session is closed")
                return []
            if session.case is not None:
                return [self.sync_job(session.id, "handoff", trace_id)]
            # From here on the assistant stays quiet, even while the case is being written.
            session = await self.store.update_session(session.id, status=SessionStatus.HANDED_OFF)
            decision = HandoffDecision(job.payload["reason"], job.payload.get("source", ""))
            written: list[Message] = []
            at_once = self.hooks.implements(self.crm, "handoff")
            if at_once:
                case, written = await self.handoff_at_once(session, decision, job)
            else:
                case = await self.open_case(session, decision, job)
            link = CaseLink(self.crm, case.id, case.number, case.url)
            await self.store.update_session(session.id, case=link)
            if at_once:
                self._handoff_done(job.created_at)
            # The sync job writes the activities (or, after a handoff at once, what arrived
            # meanwhile: nothing, usually).
            decided_at = None if at_once else job.created_at
            return [self.sync_job(session.id, "handoff", trace_id, decided_at),
                    *self.attach_jobs(session, written)]

    async def handoff_at_once(
        self, session: Session, decision: HandoffDecision, job: Job
    ) -> tuple[CaseRef, list[Message]]:
        """The contact, the case and the activities in one ``handoff`` call to the CRM;
        returns the case and the messages written to it."""
        key = derived_id("case", session.id)
        write = await self.store.record_intent(session.id, "", "case", self.crm, key)
        maybe_written = write.maybe_written or job.attempts > 1
        pending: list[ActivityRequest] = []
        # One read for the case and its activities; what arrives meanwhile is the sync job's.
        transcript = await self.store.transcript(session.id)

        async def describe(contact: Contact) -> CaseRequest:
            return await self.case_request(session, contact, decision, key, maybe_written,
                                           transcript)

        async def activities(case: CaseRef) -> list[ActivityRequest]:
            pending[:] = await self.pending_activities(session, case, transcript)
            return list(pending)

        result = await self.hooks.handoff(self.crm, HandoffRequest(
            key=key, session=session, contact=session.contact, describe=describe,
            activities=activities, case_id=write.crm_id, maybe_written=maybe_written))
        if len(result.activities) != len(pending):
            raise PluginError(f"plugin {self.crm!r} returned {len(result.activities)} "
                              f"activities for {len(pending)} requests")
        crm_id = result.contact.crm_id
        if crm_id and crm_id != session.contact.crm_id:
            await self.store.set_contact_crm_id(session.contact.id, crm_id)
        await self.store.record_written(key, result.case.id)
        for request, ref in zip(pending, result.activities, strict=True):
            await self.store.record_written(request.key, ref.id)
        self.bridge.metrics.activities_appended.labels(crm=self.crm).inc(len(pending))
        if result.created:
            self.bridge.metrics.cases_created.labels(crm=self.crm).inc()
            log.info("case %s created", result.case.number or result.case.id)
        else:
            log.info("appending to the contact's open case %s",
                     result.case.number or result.case.id)
        return result.case, [r.message for r in pending]

    async def open_case(self, session: Session, decision: HandoffDecision, job: Job) -> CaseRef:
        """The contact's open case (case-append), or a new one: created at most once."""
        key = derived_id("case", session.id)
        write = await self.store.record_intent(session.id, "", "case", self.crm, key)
        if write.crm_id:
            case = await self.hooks.get_case(self.crm, write.crm_id)
            if case is not None:
                return case
        contact = session.contact
        if not contact.crm_id:
            synced = await self.hooks.sync_contact(self.crm, contact)
            contact = await self.store.set_contact_crm_id(contact.id, synced.crm_id)
            session = replace(session, contact=contact)
        maybe_written = write.maybe_written or job.attempts > 1
        if not maybe_written:
            existing = await self.hooks.find_open_case(self.crm, contact)
            if existing is not None:
                log.info("appending to the contact's open case %s", existing.number or existing.id)
                await self.store.record_written(key, existing.id)
                return existing
        case = await self.hooks.create_case(
            self.crm, await self.case_request(session, contact, decision, key, maybe_written))
        await self.store.record_written(key, case.id)
        self.bridge.metrics.cases_created.labels(crm=self.crm).inc()
        log.info("case %s created", case.number or case.id)
        return case

    async def case_request(
        self, session: Session, contact: Contact, decision: HandoffDecision, key: str,
        maybe_written: bool, transcript: Sequence[Message] | None = None,
    ) -> CaseRequest:
        """The new case for a handoff: summary, mapped fields, subject and description
        (``transcript`` read from the store when not given)."""
        session = replace(session, contact=contact)
        if transcript is None:
            transcript = await self.store.transcript(session.id)
        summary = await self.hooks.summarize(session, transcript, decision)
        mapped = await self.hooks.map_fields(session, transcript, summary)
        fields = {column: value for column, value in mapped.items() if value.value}
        # Why a plugin left a column empty is for the rep to read, on the case.
        empty = [f"- {column}: {value.note}" for column, value in mapped.items()
                 if not value.value and value.note]
        if empty:
            summary = replace(summary, description=summary.description
                              + "\n\nFields left empty:\n" + "\n".join(empty))
        templates = self.bridge.templates
        summary = replace(
            summary,
            subject=templates.case_subject(session, transcript, summary),
            description=templates.case_description(
                summary, session, decision, self.bridge.session_link(session.id)
            ),
        )
        return CaseRequest(key=key, session=session, contact=contact, summary=summary,
                           fields=fields, maybe_written=maybe_written)

    async def on_sync(self, job: Job) -> list[NewJob]:
        """Write the session's messages that the case lacks, oldest first, in one call to the
        CRM where it offers one (``append_activities``)."""
        session = await self._session(job.payload["session_id"])
        with log_context(session_id=session.id, trace_id=job.payload.get("trace_id", "")):
            if session.case is None:
                # The handoff job (ordered before this one) has not written the case: it
                # will enqueue its own sync when it has.
                return []
            case = CaseRef(self.crm, session.case.case_id, session.case.number)
            pending = await self.pending_activities(session, case)
            if pending and self.hooks.implements(self.crm, "append_activities"):
                refs = await self.hooks.append_activities(self.crm, pending)
                for request, ref in zip(pending, refs, strict=True):
                    await self.store.record_written(request.key, ref.id)
            else:
                # One at a time, each recorded as soon as it is written, so a retry after a
                # failure part way has nothing to look up for the ones before it.
                for request in pending:
                    ref = await self.hooks.append_activity(self.crm, request)
                    await self.store.record_written(request.key, ref.id)
            self.bridge.metrics.activities_appended.labels(crm=self.crm).inc(len(pending))
            if job.payload.get("decided_at"):
                self._handoff_done(datetime.fromisoformat(job.payload["decided_at"]))
            return self.attach_jobs(session, [r.message for r in pending])

    async def pending_activities(
        self, session: Session, case: CaseRef, transcript: Sequence[Message] | None = None
    ) -> list[ActivityRequest]:
        """The session's messages the case lacks, oldest first, their intents recorded
        (``transcript`` read from the store when not given)."""
        if transcript is None:
            transcript = await self.store.transcript(session.id)
        link = self.bridge.session_link(session.id)
        return [
            request
            for index, message in enumerate(transcript)
            if (request := await self.activity_request(
                session, case, message, first=index == 0, link=link)) is not None
        ]

    def attach_jobs(self, session: Session, messages: Sequence[Message]) -> list[NewJob]:
        """One upload job per stored attachment of ``messages``, when the CRM takes files."""
        if not self.hooks.implements(self.crm, "attach_file"):
            return []
        return [
            NewJob(
                kind="attach",
                payload={"session_id": session.id, "message_id": message.id,
                         "sha256": attachment.sha256, "trace_id": message.trace_id},
                key=f"attach:{session.id}:{message.id}:{attachment.sha256}",
                order_key=session.id,
            )
            for message in messages
            for attachment in message.attachments
            if attachment.sha256 and attachment.location and not attachment.refused
            and "://" not in attachment.location  # provider-hosted media are only linked
        ]

    async def on_attach(self, job: Job) -> list[NewJob]:
        """Upload one attachment to the session's case, at most once."""
        session = await self._session(job.payload["session_id"])
        message = await self.store.get_message(job.payload["message_id"])
        if session.case is None or message is None:
            raise PermanentError("the attachment's session has no case or message any more")
        attachment = next(a for a in message.attachments if a.sha256 == job.payload["sha256"])
        with log_context(session_id=session.id, trace_id=job.payload.get("trace_id", "")):
            key = derived_id("attachment", session.id, message.id, attachment.sha256)
            # Several files of one message: the write's message id names the file too.
            write = await self.store.record_intent(
                session.id, f"{message.id}/{attachment.sha256}", "attachment", self.crm, key)
            if write.crm_id:
                return []
            path = blob_path(self.bridge.blob_dir, attachment.location)
            try:
                data = await anyio.Path(path).read_bytes()
            except FileNotFoundError:
                raise PermanentError(f"attachment {attachment.name!r} is gone from "
                                     f"{path}") from None
            case = CaseRef(self.crm, session.case.case_id, session.case.number)
            file_id = await self.hooks.attach_file(self.crm, AttachmentRequest(
                key=key, case=case, session=session, message=message, attachment=attachment,
                data=data, maybe_written=write.maybe_written or job.attempts > 1))
            if file_id:
                await self.store.record_written(key, file_id)
                log.info("attachment %s uploaded to case %s", attachment.name,
                         case.number or case.id)
            return []

    async def activity_request(
        self, session: Session, case: CaseRef, message: Message, *, first: bool, link: str
    ) -> ActivityRequest | None:
        """The request for a message the case lacks, its intent recorded; None when the case
        has it already."""
        key = derived_id("activity", session.id, message.id)
        # A message the case has already (every one, in the sync job after a handoff at
        # once) costs a read, not a write transaction.
        done = await self.store.get_write(key)
        if done is not None and done.crm_id:
            return None
        # The intent is recorded, or the existing write returned (its attempts counted, so
        # ``maybe_written`` tells whether an earlier try got this far).
        write = await self.store.record_intent(session.id, message.id, "activity", self.crm,
                                               key)
        if write.crm_id:
            return None
        text, html = self.bridge.templates.activity_bodies(
            message, session, link=link if first else None, trace_id=message.trace_id
        )
        return ActivityRequest(
            key=key, case=case, session=session, message=message,
            title=self.activity_title(message, session), body_text=text, body_html=html,
            first=first, maybe_written=write.maybe_written,
        )

    @staticmethod
    def activity_title(message: Message, session: Session) -> str:
        who = {
            Author.CUSTOMER: message.sender_name or message.sender,
            Author.ASSISTANT: "Assistant",
            Author.AGENT: "Agent",
            Author.SYSTEM: "casebridge",
        }[message.author]
        subject = " ".join((message.subject or session.subject).split())
        title = f"{session.channel.upper()} from {who}" + (f": {subject}" if subject else "")
        return title[:250]

    # -- CRM events -----------------------------------------------------------------------

    async def on_reply(self, job: Job) -> list[NewJob]:
        reply = Reply(**{k: v for k, v in job.payload.items() if k in Reply.__slots__})
        session = await self.store.find_session_by_case(reply.crm, reply.case_id)
        if session is None:
            log.info("reply on case %s, which no session holds: ignored", reply.case_id)
            return []
        with log_context(session_id=session.id, trace_id=job.payload.get("trace_id", "")):
            message = self.outbound_message(
                session,
                message_id=derived_id("reply", reply.crm, reply.activity_id),
                author=Author.AGENT,
                text=reply.text,
                html=reply.html,
                trace_id=job.payload.get("trace_id", ""),
            )
            message = replace(message, sender_name=reply.author_name)
            # The activity is the rep's own: the case already has it.
            key = derived_id("activity", session.id, message.id)
            await self.store.record_intent(session.id, message.id, "activity", reply.crm, key)
            await self.store.record_written(key, reply.activity_id)
            return await self.deliver(session, message, job)

    async def on_closed(self, job: Job) -> list[NewJob]:
        # Every session appended to the case closes with it, not only the newest.
        for session in await self.store.sessions_by_case(job.payload["crm"],
                                                         job.payload["case_id"]):
            if session.status is not SessionStatus.CLOSED:
                await self.store.update_session(session.id, status=SessionStatus.CLOSED)
                log.info("session %s closed with its case", session.id)
        return []

    @staticmethod
    def close_job(session_id: str, trace_id: str = "") -> NewJob:
        return NewJob(kind="close", payload={"session_id": session_id, "trace_id": trace_id},
                      key=f"close:{session_id}", order_key=session_id)

    async def on_close(self, job: Job) -> list[NewJob]:
        session = await self._session(job.payload["session_id"])
        with log_context(session_id=session.id, trace_id=job.payload.get("trace_id", "")):
            if session.status is not SessionStatus.CLOSED:
                await self.store.update_session(session.id, status=SessionStatus.CLOSED)
                log.info("session closed by casebridge")
            if session.case is not None and self.hooks.implements(self.crm, "resolve_case"):
                await self.hooks.resolve_case(self.crm, session.case.case_id)
            return []

    # -- helpers --------------------------------------------------------------------------

    async def _session(self, session_id: str) -> Session:
        session = await self.store.get_session(session_id)
        if session is None:
            raise PermanentError(f"session {session_id} is not in the store")
        return session


def ack_job(session: Session, message: Message) -> list[NewJob]:
    """The acknowledgement of a session's first message; none for any later message.

    A new session's id is derived from its first message, so a re-run of the inbound job
    still knows which message opened it, and the key sends it at most once."""
    if session.id != derived_id("session", message.channel, message.external_id):
        return []
    return [NewJob(kind="ack", key=f"ack:{session.id}", order_key=session.id,
                   payload={"session_id": session.id, "in_reply_to": message.id,
                            "trace_id": message.trace_id})]


def reply_job(reply: Reply, trace_id: str) -> NewJob:
    payload = {
        "crm": reply.crm, "activity_id": reply.activity_id, "case_id": reply.case_id,
        "text": reply.text, "html": reply.html, "author_name": reply.author_name,
        "trace_id": trace_id,
    }
    # Replies to one case go out in the order they arrived.
    return NewJob(kind="reply", payload=payload, key=f"reply:{reply.crm}:{reply.activity_id}",
                  order_key=f"case:{reply.crm}:{reply.case_id}", trace_id=trace_id)


def closed_job(crm: str, case_id: str, trace_id: str, event_id: str = "") -> NewJob:
    """Closing is idempotent, so each event may have its own job: a case that is reopened
    and closed again closes its sessions again (``event_id`` tells the events apart)."""
    return NewJob(kind="closed", payload={"crm": crm, "case_id": case_id},
                  key=f"closed:{crm}:{case_id}:{event_id}", trace_id=trace_id)


def crm_event_jobs(events: Sequence[CrmEvent], trace_id: str, event_id: str = "") -> list[NewJob]:
    """The jobs that act on what a CRM reported, in the order it reported them: a rep's reply
    to deliver, a closed case whose sessions close. ``event_id`` tells one report of a
    closure from another (a webhook call); a poller that sees each closure once passes none."""
    jobs = []
    for event in events:
        if event.reply is not None:
            jobs.append(reply_job(event.reply, trace_id))
        elif event.kind == "case_closed":
            jobs.append(closed_job(event.crm, event.case_id, trace_id, event_id))
    return jobs
