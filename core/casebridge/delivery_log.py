"""At-most-once delivery of replies, written once for every channel.

A runner can die, or lose its lease, between handing a reply to its channel and recording
that it did; the outbox then runs the job again. So before the channel's ``deliver_reply``
is called the intent is recorded, and after it the outcome. An intent found without an
outcome is *reconciled*, never blindly sent again. (CRM writes have the store's write log for
the same reason; replies have this log.)

Records live in the store's key-value state under :data:`NAMESPACE`, keyed by message id:
every backend has them without a migration, and every runner sharing the store sees them.
A record's stage:

* none: never tried; the channel is called.
* ``sending``: the channel was called and the outcome is unknown: the runner died, the call
  was cancelled, or the channel raised :class:`~casebridge.errors.AmbiguousWriteError` or an
  unexpected error. The next attempt asks the channel's ``reconcile_delivery`` instead: a
  Delivery it returns (SENT, found at the provider) is recorded as the outcome; None means
  the channel is sure nothing went out, and the channel is called again.
* ``not_sent``: the channel raised :class:`~casebridge.errors.TransientError` (not
  ambiguous): nothing went out, the next attempt calls the channel again.
* ``done``: the outcome (SENT, REFUSED, FAILED) is recorded; later attempts return it.

**The rule for a reply in doubt on a channel that cannot look** (it does not implement
``reconcile_delivery``: an SMTP relay has no "did you take this message" query): FAILED,
with a detail saying it may have gone out and is not sent again. A duplicate cannot be taken
back; a failure shows on the case, where the rep can check with the customer. Such a channel
that raises AmbiguousWriteError gets this answer at once rather than after a retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from .errors import AmbiguousWriteError, PermanentError, TransientError
from .model import Delivery, DeliveryState, Message, Session, utcnow
from .store import PluginStateStore

__all__ = ["NAMESPACE", "Attempt", "DeliveryLog", "Stage", "in_doubt"]

log = logging.getLogger(__name__)

NAMESPACE = "casebridge.delivery_log"


class Stage(StrEnum):
    SENDING = "sending"
    NOT_SENT = "not_sent"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Attempt:
    """The log's record of one reply. ``started_at`` is when the first attempt began (a
    reconciliation looks from there); ``tries`` counts the calls to the channel."""

    message_id: str
    channel: str
    stage: Stage
    started_at: datetime
    tries: int = 1
    delivery: Delivery | None = None

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"channel": self.channel, "stage": self.stage.value,
                                "started_at": self.started_at.isoformat(), "tries": self.tries}
        if self.delivery is not None:
            data["delivery"] = {"state": self.delivery.state.value,
                                "external_id": self.delivery.external_id,
                                "detail": self.delivery.detail,
                                "segments": self.delivery.segments}
        return data

    @classmethod
    def from_json(cls, message_id: str, data: Any) -> Attempt | None:
        """The record stored as ``data``, or None for no record. Raises ValueError for a
        record this module did not write."""
        if data is None:
            return None
        try:
            found = data.get("delivery")
            delivery = None if found is None else Delivery(
                DeliveryState(found["state"]), str(found["external_id"]), str(found["detail"]),
                int(found["segments"]))
            attempt = cls(message_id, str(data["channel"]), Stage(data["stage"]),
                          datetime.fromisoformat(data["started_at"]), int(data["tries"]),
                          delivery)
            if (attempt.stage is Stage.DONE) != (delivery is not None):
                raise ValueError("an outcome belongs to a done record, and only to one")
            return attempt
        except (AttributeError, KeyError, TypeError, ValueError):
            raise ValueError(f"delivery log record of {message_id} is unreadable: {data!r}")\
                from None


def begin(current: Attempt | None, message_id: str, channel: str, now: datetime) -> Attempt:
    """The record just before the channel is called (again)."""
    if current is None:
        return Attempt(message_id, channel, Stage.SENDING, now)
    return replace(current, stage=Stage.SENDING, tries=current.tries + 1)


def in_doubt(channel: str, reason: str = "") -> Delivery:
    """The outcome of a reply that may have gone out on a channel that cannot tell."""
    why = reason or "an earlier attempt to send it was interrupted"
    return Delivery(DeliveryState.FAILED, detail=(
        f"{why}; the {channel} channel may have accepted it and cannot tell, so it is not "
        "sent again (check with the customer)"))


class ChannelHooks(Protocol):
    """The part of the hook facade this log uses."""

    def implements(self, plugin: str, hook: str) -> bool: ...

    async def deliver_reply(self, channel: str, session: Session, message: Message,
                            transcript: Sequence[Message]) -> Delivery: ...

    async def reconcile_delivery(self, channel: str, session: Session, message: Message,
                                 since: datetime) -> Delivery | None: ...


class DeliveryLog:
    """Delivers each reply through its session's channel at most once (see the module)."""

    def __init__(self, store: PluginStateStore, hooks: ChannelHooks,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.store, self.hooks, self._clock = store, hooks, clock

    async def get(self, message_id: str) -> Attempt | None:
        return Attempt.from_json(message_id,
                                 await self.store.get_state(NAMESPACE, message_id))

    async def deliver(
        self, session: Session, message: Message, transcript: Sequence[Message]
    ) -> Delivery:
        """Send ``message`` unless an earlier attempt did, and return what became of it.

        A :class:`PermanentError` from the channel is a FAILED outcome. A TransientError
        (and anything unexpected) propagates for the outbox to retry, after the log says
        whether the next attempt may send or must reconcile first."""
        channel = session.channel
        raw = await self.store.get_state(NAMESPACE, message.id)
        current = Attempt.from_json(message.id, raw)
        if current is not None and current.delivery is not None:
            return current.delivery  # done
        if current is not None and current.stage is Stage.SENDING:
            found = await self._reconcile(session, message, current)
            if found is not None:
                await self._swap(raw, replace(current, stage=Stage.DONE, delivery=found))
                return found
        attempt = begin(current, message.id, channel, self._clock())
        if not await self._swap(raw, attempt):
            raise TransientError(f"reply {message.id} is being delivered by another worker")
        try:
            delivery = await self.hooks.deliver_reply(channel, session, message, transcript)
        except AmbiguousWriteError as exc:
            if self.hooks.implements(channel, "reconcile_delivery"):
                raise  # still "sending": the retry asks the channel first
            delivery = in_doubt(channel, str(exc))
        except TransientError:
            await self._swap(attempt.as_json(), replace(attempt, stage=Stage.NOT_SENT))
            raise
        except PermanentError as exc:
            delivery = Delivery(DeliveryState.FAILED, detail=str(exc))
        await self._swap(attempt.as_json(), replace(attempt, stage=Stage.DONE,
                                                    delivery=delivery))
        return delivery

    async def _reconcile(self, session: Session, message: Message,
                         attempt: Attempt) -> Delivery | None:
        """What became of a send whose outcome was never recorded; None: it did not go out."""
        channel = session.channel
        if not self.hooks.implements(channel, "reconcile_delivery"):
            log.warning("reply %s: an earlier send was interrupted and %s cannot tell whether "
                        "it went out: not sent again", message.id, channel)
            return in_doubt(channel)
        try:
            found = await self.hooks.reconcile_delivery(channel, session, message,
                                                        attempt.started_at)
        except PermanentError as exc:
            # The lookup itself cannot succeed (the provider refuses it): the reply stays in
            # doubt for good, and the rule for doubt applies.
            return in_doubt(channel, f"the lookup of an interrupted send failed ({exc})")
        if found is not None:
            log.info("reply %s: an earlier send was interrupted; %s says %s: not sent again",
                     message.id, channel, found.state.value)
        return found

    async def _swap(self, expected: Any | None, attempt: Attempt) -> bool:
        swapped = await self.store.compare_and_put_state(
            NAMESPACE, attempt.message_id, expected, attempt.as_json())
        if not swapped and attempt.stage is not Stage.SENDING:
            # Another worker took the reply over meanwhile (this one lost its lease); its
            # record stands.
            log.warning("reply %s: the delivery log changed under this attempt; its %s "
                        "outcome is not recorded", attempt.message_id, attempt.stage.value)
        return swapped
