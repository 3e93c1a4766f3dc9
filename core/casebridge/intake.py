"""A stored inbound's job: thread it into a session, then let the assistant answer, hand the
session off, or (after handoff) sync the message to the case.

Threading: a verified reply token or our own ids in the thread references name a session,
which counts only when the sender is its customer; else the contact's open session on the
same channel address; else a new session. The contact is found (or created) by the sender's
address, filed as an e-mail address or a phone number as the channel said it is.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

from .errors import PermanentError
from .jobs import AckJob, AnswerJob, HandoffJob, InboundJob, Run, SyncJob
from .logs import log_context
from .model import AddressKind, Contact, Message, Session, SessionStatus, derived_id, utcnow
from .stages import Stage
from .store import NewJob

log = logging.getLogger(__name__)


def contact_addresses(address: str, kind: AddressKind) -> tuple[list[str], list[str]]:
    """(emails, phones) holding one sender address of the given kind."""
    if kind is AddressKind.EMAIL:
        return [address.lower()], []
    return [], [address]


def legacy_sender_kind(address: str) -> AddressKind:
    """The kind an inbound job queued before jobs carried it would have been given then (by
    its "@"). Only such jobs, still pending across an upgrade, come here."""
    return AddressKind.EMAIL if "@" in address else AddressKind.PHONE


def new_session(message: Message, contact: Contact) -> Session:
    """The session a message opens. Its id is derived from that message, so a re-run of the
    inbound job finds it again, and knows which message opened it."""
    return Session(
        id=derived_id("session", message.channel, message.external_id),
        channel=message.channel,
        contact=contact,
        status=SessionStatus.ASSISTANT,
        channel_address=message.recipients[0] if message.recipients else "",
        subject=message.subject,
    )


def ack_job(session: Session, message: Message) -> list[NewJob]:
    """The acknowledgement of a session's first message; none for any later message (the
    key sends it at most once)."""
    if session.id != derived_id("session", message.channel, message.external_id):
        return []
    return [AckJob(session.id, message.id, message.trace_id).to_new_job()]


class Intake(Stage):
    """The ``inbound`` job."""

    async def on_inbound(self, job: InboundJob, run: Run) -> list[NewJob]:
        message = await self.store.get_message(job.message_id)
        if message is None:
            raise PermanentError(f"message {job.message_id} is not in the store")
        with log_context(trace_id=message.trace_id):
            transcript = None
            if message.session_id:  # a re-run, or a message filed by hand
                session = await self.session(message.session_id)
            else:
                session, opened = await self.thread(message, job.sender_kind)
                if opened:  # the session was stored with this message in it, and no other
                    message = replace(message, session_id=session.id)
                    transcript = [message]
                else:
                    message = await self.store.assign_message(message.id, session.id)
            with log_context(session_id=session.id):
                acknowledge = (ack_job(session, message)
                               if self.bridge.config.bridge.acknowledge else [])
                if session.status is not SessionStatus.ASSISTANT:
                    # Handed off: the case gets this message at once.
                    return [SyncJob(session.id, message.trace_id,
                                    cause=message.id).to_new_job()]
                return acknowledge + await self.assistant_step(session, message, transcript)

    async def thread(self, message: Message, kind: AddressKind | None
                     ) -> tuple[Session, bool]:
        """Find the session a new inbound belongs to, or open one with it: (the session,
        whether it was opened with the message in it)."""
        contact = await self.contact_for(message, kind)
        candidate = await self._hinted_session(message)
        # A header can be forged or forwarded: it only counts when the sender is the
        # session's customer.
        if candidate is not None and candidate.contact.id == contact.id:
            return candidate, False
        idle = timedelta(hours=self.bridge.config.bridge.session_idle_hours)
        fresh = new_session(message, contact)
        session = await self.store.find_open_session(
            message.channel, contact.id, fresh.channel_address, utcnow() - idle
        )
        if session is not None:
            return session, False
        log.info("new session %s on %s", fresh.id, fresh.channel)
        return await self.store.create_session(fresh, first_message=message.id), True

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

    async def contact_for(self, message: Message, kind: AddressKind | None) -> Contact:
        """The sender's contact, created on its first message."""
        if kind is None:
            # A job from before the kind was recorded: a contact holding the address as
            # either kind is the sender's; only a new one needs the old rule.
            found = await self.store.find_contact([message.sender.lower()], [message.sender])
            if found is not None:
                return found
            kind = legacy_sender_kind(message.sender)
        emails, phones = contact_addresses(message.sender, kind)
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

    async def assistant_step(self, session: Session, message: Message,
                             transcript: list[Message] | None = None) -> list[NewJob]:
        """The assistant's answer or a handoff, on the session's ``transcript`` (read here
        unless given)."""
        if transcript is None:
            transcript = await self.store.transcript(session.id)
        decision = await self.hooks.handoff_policy(session, transcript)
        if decision is None:
            turn = await self.hooks.assistant_turn(session, transcript)
            if turn is not None and turn.handoff is not None:
                decision = turn.handoff
            elif turn is not None and turn.answer:
                return [AnswerJob(session.id, turn.answer, message.id,
                                  message.trace_id).to_new_job()]
        if decision is None:
            return []
        log.info("handoff decided: %s", decision.reason)
        return [HandoffJob.deciding(session.id, decision, message.trace_id).to_new_job()]
