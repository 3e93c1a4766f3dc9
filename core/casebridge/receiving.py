"""How a raw inbound becomes a stored message: parsed at once, or kept raw and parsed later.

``receive`` runs the channel's ``ingest`` and commits the message (or why it was dropped)
before it returns: the transport acknowledges after that. ``receive_later`` only makes the
raw inbound durable, with an ``ingest`` job that parses it in the outbox, as a mail server
queues a message before it delivers it: a transport taking bursts (SMTP) acknowledges after
one commit, and the parsing runs at the outbox's pace, never holding the sender's
connection. Both end the same way: one stored message with its ``inbound`` job, or one
dropped-inbound record.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from dataclasses import dataclass, replace

from .errors import PermanentError
from .jobs import InboundJob, IngestJob, Run
from .logs import log_context, new_trace_id
from .model import Inbound, RawInbound
from .stages import Stage
from .store import NewJob

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Received:
    """What became of one raw inbound: stored (``message_id``), a duplicate, or dropped."""

    message_id: str = ""
    duplicate: bool = False
    dropped: str = ""


class Receiving(Stage):
    """``Bridge.receive`` and ``receive_later``, and the ``ingest`` job."""

    async def receive(self, raw: RawInbound) -> Received:
        """Parse ``raw`` with its channel's ``ingest`` and make the result durable."""
        trace_id = new_trace_id()
        with log_context(trace_id=trace_id):
            return await self._ingest(raw, trace_id)

    async def receive_later(self, raw: RawInbound) -> None:
        """Make ``raw`` durable (a full fsync) with the job that will parse it; returns once
        committed. An inbound with neither payload nor fields is refused here: nothing
        could ever be parsed from it."""
        if not raw.payload and not raw.fields:
            raise PermanentError(f"an empty {raw.channel} inbound (no payload, no fields)")
        job = IngestJob(str(uuid.uuid4()), new_trace_id(), raw.channel, raw.sender)
        await self.store.accept_raw(job.raw_id, raw, job.to_new_job())
        self.bridge.outbox.wake()

    async def on_ingest(self, job: IngestJob, run: Run) -> list[NewJob]:
        raw = await self.store.get_raw(job.raw_id)
        if raw is None:
            return []  # a re-run after the raw inbound was parsed and let go
        # A PermanentError is recorded as a dropped inbound: there is no sender to refuse now.
        with log_context(trace_id=job.trace_id), contextlib.suppress(PermanentError):
            received = await self._ingest(raw, job.trace_id, parsed_raw=job.raw_id)
            if received.message_id:
                return []  # the raw inbound went with the message's own commit
        # Dropped, and the drop is committed: the raw copy is no longer needed. A crash
        # before this line reads it again, and the drop is recorded once.
        await self.store.delete_raw(job.raw_id)
        return []

    async def _ingest(self, raw: RawInbound, trace_id: str, *, parsed_raw: str = ""
                      ) -> Received:
        try:
            inbound: Inbound = await self.hooks.ingest(raw.channel, raw)
        except PermanentError as exc:
            # Unparseable for good: the transport refuses it, and the operator sees why
            # beside every other dropped inbound, whatever the channel.
            await self._record_dropped(raw, f"refused: {exc}")
            raise
        if inbound.message is None:
            await self._record_dropped(raw, inbound.dropped or "dropped")
            log.info("inbound dropped: %s", inbound.dropped)
            return Received(dropped=inbound.dropped or "dropped")
        message = inbound.message
        if not message.trace_id:
            message = replace(message, trace_id=trace_id)
        if not message.sender_name and inbound.contact_name:
            message = replace(message, sender_name=inbound.contact_name)
        job = InboundJob(message.id, message.trace_id, inbound.sender_kind,
                         message.channel, message.sender)
        stored = await self.store.accept_inbound(message, job.to_new_job(),
                                                 parsed_raw=parsed_raw)
        if stored:
            # Counted here, once per stored inbound, not in the job (which may re-run).
            self.bridge.metrics.messages_in.labels(channel=message.channel).inc()
            self.bridge.outbox.wake()
        else:
            log.info("duplicate inbound %s dropped", message.external_id)
        return Received(message_id=message.id, duplicate=not stored)

    async def _record_dropped(self, raw: RawInbound, reason: str) -> None:
        try:
            drop_id = _drop_id(raw)
        except PermanentError:
            log.warning("an empty %s inbound was dropped: %s", raw.channel, reason)
            return
        await self.store.record_dropped(raw.channel, drop_id, raw.sender, reason,
                                        raw.received_at)
        self.bridge.metrics.messages_dropped.labels(channel=raw.channel,
                                                     reason=reason[:40]).inc()


def _drop_id(raw: RawInbound) -> str:
    if raw.transport_id:
        return raw.transport_id
    if raw.payload:
        return "sha256:" + hashlib.sha256(raw.payload).hexdigest()
    raise PermanentError("an inbound with neither an id nor a payload cannot be recorded")
