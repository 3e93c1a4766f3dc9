"""The ``handoff`` job: a session goes to a human as a CRM case.

The contact's open case is appended to (case-append), else a case is created with the
summary as its description; either way at most once per session: the case's write records
its intent first, and a write that may have reached the CRM is looked up before it is made
again. A CRM that implements ``handoff`` gets the contact, the case and the activities in
one call; otherwise the case is written here and a ``sync`` job writes the activities.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from .case_sync import CaseSync
from .errors import PluginError
from .jobs import HandoffJob, Run, SyncJob
from .logs import log_context
from .model import (
    ActivityRequest,
    CaseLink,
    CaseRef,
    CaseRequest,
    Contact,
    FieldValue,
    HandoffDecision,
    HandoffRequest,
    Message,
    Session,
    SessionStatus,
    Summary,
    derived_id,
    utcnow,
)
from .stages import Stage
from .store import NewJob

if TYPE_CHECKING:
    from .bridge import Bridge

log = logging.getLogger(__name__)


def filled_fields(
    summary: Summary, mapped: Mapping[str, FieldValue]
) -> tuple[dict[str, FieldValue], Summary]:
    """The columns to write (those with a value), and the summary with a note of why each
    empty column was left empty, for the rep to read on the case."""
    fields = {column: value for column, value in mapped.items() if value.value}
    empty = [f"- {column}: {value.note}" for column, value in mapped.items()
             if not value.value and value.note]
    if empty:
        summary = replace(summary, description=summary.description
                          + "\n\nFields left empty:\n" + "\n".join(empty))
    return fields, summary


class Handoffs(Stage):
    """The ``handoff`` job."""

    def __init__(self, bridge: Bridge, case_sync: CaseSync) -> None:
        super().__init__(bridge)
        self.case_sync = case_sync

    async def on_handoff(self, job: HandoffJob, run: Run) -> list[NewJob]:
        session = await self.session(job.session_id)
        with log_context(session_id=session.id, trace_id=job.trace_id):
            if session.status is SessionStatus.CLOSED:
                log.info("handoff skipped: the session is closed")
                return []
            if session.case is not None:
                return [SyncJob(session.id, job.trace_id, cause="handoff").to_new_job()]
            # From here on the assistant stays quiet, even while the case is being written.
            session = await self.store.update_session(session.id, status=SessionStatus.HANDED_OFF)
            written: list[Message] = []
            at_once = self.hooks.implements(self.crm, "handoff")
            if at_once:
                case, written = await self.handoff_at_once(session, job.decision, run)
            else:
                case = await self.open_case(session, job.decision, run)
            link = CaseLink(self.crm, case.id, case.number, case.url)
            await self.store.update_session(session.id, case=link)
            if at_once:
                # The case and its activities are written: the rep can start.
                self.bridge.metrics.handoff_latency.observe(
                    (utcnow() - run.created_at).total_seconds())
            # The sync job writes the activities (or, after a handoff at once, what arrived
            # meanwhile: nothing, usually).
            decided_at = None if at_once else run.created_at
            return [SyncJob(session.id, job.trace_id, decided_at, "handoff").to_new_job(),
                    *self.case_sync.attach_jobs(session, written)]

    async def handoff_at_once(
        self, session: Session, decision: HandoffDecision, run: Run
    ) -> tuple[CaseRef, list[Message]]:
        """The contact, the case and the activities in one ``handoff`` call to the CRM;
        returns the case and the messages written to it."""
        key = derived_id("case", session.id)
        write = await self.store.record_intent(session.id, "", "case", self.crm, key)
        maybe_written = write.maybe_written or run.attempts > 1
        pending: list[ActivityRequest] = []
        # One read for the case and its activities; what arrives meanwhile is the sync job's.
        transcript = await self.store.transcript(session.id)

        async def describe(contact: Contact) -> CaseRequest:
            return await self.case_request(session, contact, decision, key, maybe_written,
                                           transcript)

        async def activities(case: CaseRef) -> list[ActivityRequest]:
            pending[:] = await self.case_sync.pending_activities(session, case, transcript)
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
        # The case and its activities recorded in one transaction, as they were written.
        await self.store.record_all_written([
            (key, result.case.id),
            *((request.key, ref.id) for request, ref in zip(pending, result.activities,
                                                             strict=True))])
        self.bridge.metrics.activities_appended.labels(crm=self.crm).inc(len(pending))
        if result.created:
            self.bridge.metrics.cases_created.labels(crm=self.crm).inc()
            log.info("case %s created", result.case.number or result.case.id)
        else:
            log.info("appending to the contact's open case %s",
                     result.case.number or result.case.id)
        return result.case, [r.message for r in pending]

    async def open_case(self, session: Session, decision: HandoffDecision, run: Run) -> CaseRef:
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
        maybe_written = write.maybe_written or run.attempts > 1
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
        fields, summary = filled_fields(summary, mapped)
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
