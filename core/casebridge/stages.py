"""What every stage of the pipeline reaches: the runner's store, hooks and CRM route, and a
session lookup that turns a missing session into a job that cannot succeed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import PermanentError
from .jobs import Run
from .model import Session

if TYPE_CHECKING:
    from .bridge import Bridge


class Stage:
    """A group of job handlers. Holds no state of its own: everything lives in the store."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.store = bridge.store
        self.hooks = bridge.hooks
        self.crm = bridge.config.bridge.crm

    async def session(self, session_id: str) -> Session:
        session = await self.store.get_session(session_id)
        if session is None:
            raise PermanentError(f"session {session_id} is not in the store")
        return session

    def budget(self, run: Run) -> int:
        """How many attempts the job has in all."""
        return run.max_attempts or self.bridge.config.outbox.max_attempts
