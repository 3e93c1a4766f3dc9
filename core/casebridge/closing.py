"""Closing sessions: when the CRM closes a case (``closed``), and when casebridge closes a
session itself (``close``) and tells the CRM. Both are idempotent."""

from __future__ import annotations

import logging

from .jobs import ClosedJob, CloseJob, Run
from .logs import log_context
from .model import SessionStatus
from .stages import Stage
from .store import NewJob

log = logging.getLogger(__name__)


class Closing(Stage):
    """The ``closed`` and ``close`` jobs."""

    async def on_closed(self, job: ClosedJob, run: Run) -> list[NewJob]:
        # Every session appended to the case closes with it, not only the newest.
        with log_context(trace_id=job.trace_id or run.trace_id):
            for session in await self.store.sessions_by_case(job.crm, job.case_id):
                if session.status is not SessionStatus.CLOSED:
                    await self.store.update_session(session.id, status=SessionStatus.CLOSED)
                    log.info("session %s closed with its case", session.id)
        return []

    async def on_close(self, job: CloseJob, run: Run) -> list[NewJob]:
        session = await self.session(job.session_id)
        with log_context(session_id=session.id, trace_id=job.trace_id):
            if session.status is not SessionStatus.CLOSED:
                await self.store.update_session(session.id, status=SessionStatus.CLOSED)
                log.info("session closed by casebridge")
            if session.case is not None and self.hooks.implements(self.crm, "resolve_case"):
                await self.hooks.resolve_case(self.crm, session.case.case_id)
            return []
