"""What became of every outbound reply: its delivery state, for the session page, the CLI
and the JSON API.

A reply (a rep's, or the assistant's answer) is ``queued`` when it is stored, ``sent`` once
its channel handed it over (the relay took the email, the provider took the SMS),
``delivered`` when the channel later learns it arrived (an SMS status callback), ``failed``
or ``refused`` (with the reason) when it will not reach the customer. ``queued`` keeps the
reason of the last failed attempt while the outbox retries.

Records live in the store's plugin state under :data:`STATE_NAMESPACE`, keyed by message id,
so every runner sharing a database sees the same state. The ordering rule (:func:`advance`)
is pure: a later report never moves a reply back (a late "sent" after "delivered").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from .model import Author, Direction, Message, utcnow
from .store import PluginStateStore

STATE_NAMESPACE = "casebridge.delivery"


class ReplyState(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    REFUSED = "refused"


FINAL = frozenset({ReplyState.DELIVERED, ReplyState.FAILED, ReplyState.REFUSED})
_RANK = {
    ReplyState.QUEUED: 0,
    ReplyState.SENT: 1,
    ReplyState.DELIVERED: 2,
    ReplyState.FAILED: 2,
    ReplyState.REFUSED: 2,
}


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One reply's delivery state. ``detail`` says why (a failure's reason, the error a retry
    is waiting out); ``external_id`` is the channel's id (Message-ID, MessageSid)."""

    message_id: str
    state: ReplyState
    detail: str = ""
    external_id: str = ""
    updated_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "detail": self.detail,
            "external_id": self.external_id,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


def advance(current: DeliveryRecord | None, new: DeliveryRecord) -> DeliveryRecord | None:
    """The record after ``new`` is reported, or None when it changes nothing.

    States only move forward (queued, sent, then one final state); a final state is kept,
    except that a reply reported ``failed`` after ``delivered`` (a late bounce) is failed.
    Within one state a newer detail replaces the older one.
    """
    if current is None:
        return new
    if current.state is new.state:
        if (current.detail, current.external_id) == (new.detail, new.external_id):
            return None
        return DeliveryRecord(
            new.message_id,
            new.state,
            new.detail or current.detail,
            new.external_id or current.external_id,
            new.updated_at,
        )
    late_bounce = current.state is ReplyState.DELIVERED and new.state is ReplyState.FAILED
    stale = (current.state in FINAL and not late_bounce) or (
        _RANK[new.state] < _RANK[current.state])
    if stale:
        # A status callback can beat the send's own report: the state stays, but the
        # channel's id the late report carries is kept.
        if new.external_id and not current.external_id:
            return replace(current, external_id=new.external_id)
        return None
    return DeliveryRecord(
        new.message_id,
        new.state,
        new.detail,
        new.external_id or current.external_id,
        new.updated_at,
    )


def describe(record: DeliveryRecord | None) -> str:
    """One line for people: "sent", "failed: no relay configured ..."."""
    if record is None:
        return "unknown"
    detail = " ".join(record.detail.split())
    return f"{record.state.value}: {detail}" if detail else record.state.value


def tracked(message: Message) -> bool:
    """Whether ``message`` is a reply to the customer whose delivery is tracked."""
    return message.direction is Direction.OUTBOUND and message.author in (
        Author.AGENT,
        Author.ASSISTANT,
    )


def _from_json(message_id: str, data: Any) -> DeliveryRecord | None:
    if not isinstance(data, dict):
        return None
    try:
        state = ReplyState(data.get("state", ""))
    except ValueError:
        return None
    at = data.get("updated_at")
    return DeliveryRecord(
        message_id,
        state,
        str(data.get("detail", "")),
        str(data.get("external_id", "")),
        datetime.fromisoformat(at) if isinstance(at, str) else None,
    )


async def get(store: PluginStateStore, message_id: str) -> DeliveryRecord | None:
    return _from_json(message_id, await store.get_state(STATE_NAMESPACE, message_id))


async def report(
    store: PluginStateStore,
    message_id: str,
    state: ReplyState,
    detail: str = "",
    external_id: str = "",
) -> DeliveryRecord | None:
    """Apply one report atomically (two runners racing lose neither); returns the stored
    record, or None when nothing was stored for the message and the report changed nothing."""
    new = DeliveryRecord(message_id, state, detail, external_id, utcnow())
    while True:
        raw = await store.get_state(STATE_NAMESPACE, message_id)
        current = _from_json(message_id, raw)
        after = advance(current, new)
        if after is None:
            return current
        if await store.compare_and_put_state(STATE_NAMESPACE, message_id, raw, after.as_json()):
            return after


async def for_transcript(
    store: PluginStateStore, transcript: Sequence[Message]
) -> dict[str, DeliveryRecord]:
    """The delivery records of the tracked replies in ``transcript``, by message id."""
    found: dict[str, DeliveryRecord] = {}
    for message in transcript:
        if tracked(message) and (record := await get(store, message.id)) is not None:
            found[message.id] = record
    return found
