"""Keeping a handed-off session's case complete: every message of the session becomes one
activity on the case, oldest first, and every stored attachment one file.

Each write records its intent before the CRM call and the CRM's id after it (one store
call, ``record_intent``, returns an existing write instead), so a re-run writes only what
the case lacks and looks up what an earlier attempt may have written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import anyio

from .blobs import blob_path
from .errors import PermanentError
from .jobs import AttachJob, Run, SyncJob
from .logs import log_context
from .model import (
    ActivityRequest,
    Attachment,
    AttachmentRequest,
    Author,
    CaseRef,
    Message,
    Session,
    derived_id,
    utcnow,
)
from .stages import Stage
from .store import CrmWrite, NewJob, WriteIntent

log = logging.getLogger(__name__)


def activity_title(message: Message, session: Session) -> str:
    """The activity's title: channel, who wrote, and the subject, within 250 characters."""
    who = {
        Author.CUSTOMER: message.sender_name or message.sender,
        Author.ASSISTANT: "Assistant",
        Author.AGENT: "Agent",
        Author.SYSTEM: "casebridge",
    }[message.author]
    subject = " ".join((message.subject or session.subject).split())
    title = f"{session.channel.upper()} from {who}" + (f": {subject}" if subject else "")
    return title[:250]


def uploadable(attachment: Attachment) -> bool:
    """A file kept in the blob store; provider-hosted media are only linked."""
    return bool(attachment.sha256 and attachment.location and not attachment.refused
                and "://" not in attachment.location)


def attach_jobs(session: Session, messages: Sequence[Message]) -> list[NewJob]:
    """One upload job per stored attachment of ``messages``."""
    return [
        AttachJob(session.id, message.id, attachment.sha256, message.trace_id).to_new_job()
        for message in messages
        for attachment in message.attachments
        if uploadable(attachment)
    ]


class CaseSync(Stage):
    """The ``sync`` and ``attach`` jobs, and the activity requests a handoff writes."""

    def attach_jobs(self, session: Session, messages: Sequence[Message]) -> list[NewJob]:
        """:func:`attach_jobs`, when the CRM takes files."""
        if not self.hooks.implements(self.crm, "attach_file"):
            return []
        return attach_jobs(session, messages)

    async def on_sync(self, job: SyncJob, run: Run) -> list[NewJob]:
        """Write the session's messages that the case lacks, oldest first, in one call to the
        CRM where it offers one (``append_activities``)."""
        session = await self.session(job.session_id)
        with log_context(session_id=session.id, trace_id=job.trace_id):
            if session.case is None:
                # The handoff job (ordered before this one) has not written the case: it
                # will enqueue its own sync when it has.
                return []
            case = CaseRef(self.crm, session.case.case_id, session.case.number)
            pending = await self.pending_activities(session, case)
            if pending and self.hooks.implements(self.crm, "append_activities"):
                refs = await self.hooks.append_activities(self.crm, pending)
                await self.store.record_all_written(
                    [(request.key, ref.id) for request, ref in zip(pending, refs, strict=True)])
            else:
                # One at a time, each recorded as soon as it is written, so a retry after a
                # failure part way has nothing to look up for the ones before it.
                for request in pending:
                    ref = await self.hooks.append_activity(self.crm, request)
                    await self.store.record_written(request.key, ref.id)
            self.bridge.metrics.activities_appended.labels(crm=self.crm).inc(len(pending))
            if job.decided_at is not None:
                # The case and its first activity are written: the rep can start.
                self.bridge.metrics.handoff_latency.observe(
                    (utcnow() - job.decided_at).total_seconds())
            return self.attach_jobs(session, [r.message for r in pending])

    async def pending_activities(
        self, session: Session, case: CaseRef, transcript: Sequence[Message] | None = None
    ) -> list[ActivityRequest]:
        """The session's messages the case lacks, oldest first, their intents recorded
        (``transcript`` read from the store when not given)."""
        if transcript is None:
            transcript = await self.store.transcript(session.id)
        keys = [derived_id("activity", session.id, message.id) for message in transcript]
        # Messages the case has already (every one, in the sync job after a handoff at once)
        # cost one read, not a write transaction; the others' intents one transaction.
        done = await self.store.get_writes(keys)
        lacking = [(index, key) for index, key in enumerate(keys)
                   if not (key in done and done[key].crm_id)]
        if not lacking:
            return []
        # The intents recorded, or the existing writes returned (their attempts counted, so
        # ``maybe_written`` tells whether an earlier try got this far).
        writes = await self.store.record_intents([
            WriteIntent(session.id, transcript[index].id, "activity", self.crm, key)
            for index, key in lacking])
        link = self.bridge.session_link(session.id)
        return [
            self.activity_request(session, case, transcript[index], write, first=index == 0,
                                  link=link)
            for (index, _), write in zip(lacking, writes, strict=True) if not write.crm_id
        ]

    def activity_request(
        self, session: Session, case: CaseRef, message: Message, write: CrmWrite, *,
        first: bool, link: str
    ) -> ActivityRequest:
        """The request that writes ``message`` (its intent ``write``) to the case."""
        text, html = self.bridge.templates.activity_bodies(
            message, session, link=link if first else None, trace_id=message.trace_id
        )
        return ActivityRequest(
            key=write.key, case=case, session=session, message=message,
            title=activity_title(message, session), body_text=text, body_html=html,
            first=first, maybe_written=write.maybe_written,
        )

    async def on_attach(self, job: AttachJob, run: Run) -> list[NewJob]:
        """Upload one attachment to the session's case, at most once."""
        session = await self.session(job.session_id)
        message = await self.store.get_message(job.message_id)
        if session.case is None or message is None:
            raise PermanentError("the attachment's session has no case or message any more")
        attachment = next((a for a in message.attachments if a.sha256 == job.sha256), None)
        if attachment is None:
            raise PermanentError(f"message {message.id} has no attachment {job.sha256}")
        with log_context(session_id=session.id, trace_id=job.trace_id):
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
                data=data, maybe_written=write.maybe_written or run.attempts > 1))
            if file_id:
                await self.store.record_written(key, file_id)
                log.info("attachment %s uploaded to case %s", attachment.name,
                         case.number or case.id)
            return []
