"""At-most-once reply delivery in the core (casebridge.delivery_log): the intent before the
channel's deliver_reply, the outcome after it, and an intent without an outcome reconciled
through the channel, never sent again blindly. On every store backend."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from casebridge import deliveries, hookimpl
from casebridge.bridge import Bridge
from casebridge.delivery_log import NAMESPACE, Attempt, DeliveryLog, Stage
from casebridge.errors import AmbiguousWriteError, PermanentError, TransientError
from casebridge.jobs import Run
from casebridge.model import (
    Author,
    Contact,
    Delivery,
    DeliveryState,
    Direction,
    Message,
    Session,
    SessionStatus,
    utcnow,
)
from casebridge.replies import outbound_message
from hypothesis import given
from hypothesis import strategies as st
from support.bridges import inbound, install_jsonl, only_session, settle, write_config
from support.plugins import LoopChannel
from support.stores import T0, FakeClock

pytestmark = pytest.mark.anyio

SESSION = Session(id="s1", channel="wire", contact=Contact("c1", phones=("+14155550100",)),
                  status=SessionStatus.HANDED_OFF)


def reply(message_id: str) -> Message:
    return Message(id=message_id, channel="wire", direction=Direction.OUTBOUND,
                   author=Author.AGENT, external_id=f"casebridge:{message_id}", sender="desk",
                   recipients=("+14155550100",), text="We are on it.", session_id="s1")


class Wire:
    """The hook facade of one channel whose transport is a list. ``script`` says what each
    deliver_reply call does: "send" (the default), "die after send" / "die before send" (the
    runner is killed mid-call: it never returns), or an exception to raise. ``reconciles``
    False is a channel without the reconcile_delivery hook."""

    def __init__(self, *script: Any, reconciles: bool = True) -> None:
        self.script: deque[Any] = deque(script)
        self.reconciles = reconciles
        self.sent: list[str] = []
        self.calls: list[tuple[str, str]] = []
        self.since: datetime | None = None

    def implements(self, plugin: str, hook: str) -> bool:
        assert plugin == "wire"
        return hook != "reconcile_delivery" or self.reconciles

    async def deliver_reply(self, channel: str, session: Session, message: Message,
                            transcript: Sequence[Message]) -> Delivery:
        self.calls.append(("deliver", message.id))
        step = self.script.popleft() if self.script else "send"
        if isinstance(step, Exception):
            if isinstance(step, AmbiguousWriteError):
                self.sent.append(message.id)  # it went out; the answer was lost
            raise step
        if step == "die before send":
            await anyio.sleep_forever()
        self.sent.append(message.id)
        if step == "die after send":
            await anyio.sleep_forever()
        return Delivery(DeliveryState.SENT, f"wire-{message.id}")

    async def reconcile_delivery(self, channel: str, session: Session, message: Message,
                                 since: datetime) -> Delivery | None:
        assert self.reconciles
        self.calls.append(("reconcile", message.id))
        self.since = since
        if message.id in self.sent:
            return Delivery(DeliveryState.SENT, f"wire-{message.id}")
        return None


async def killed_mid_send(log: DeliveryLog, message: Message) -> None:
    """Run one delivery until the channel hangs, then kill it (what SIGKILL leaves)."""
    with anyio.move_on_after(0.2) as scope:
        await log.deliver(SESSION, message, [])
    assert scope.cancelled_caught, "the send was expected to hang"


async def test_a_reply_is_sent_once_however_often_its_job_runs(store: Any) -> None:
    wire = Wire()
    log = DeliveryLog(store, wire)
    first = await log.deliver(SESSION, reply("m1"), [])
    assert first == Delivery(DeliveryState.SENT, "wire-m1")
    assert await log.deliver(SESSION, reply("m1"), []) == first
    assert wire.sent == ["m1"] and wire.calls == [("deliver", "m1")]
    record = await log.get("m1")
    assert record is not None and (record.stage, record.tries) == (Stage.DONE, 1)


async def test_an_intent_without_outcome_is_reconciled_not_resent(
    store: Any, clock: FakeClock
) -> None:
    wire = Wire("die after send")
    log = DeliveryLog(store, wire, clock=clock)
    await killed_mid_send(log, reply("m2"))
    record = await log.get("m2")
    assert record is not None and record.stage is Stage.SENDING and record.delivery is None
    clock.advance(minutes=5)
    # The job runs again: the channel is asked what became of the send, not to send it.
    delivery = await log.deliver(SESSION, reply("m2"), [])
    assert delivery == Delivery(DeliveryState.SENT, "wire-m2")
    assert wire.calls == [("deliver", "m2"), ("reconcile", "m2")]
    assert wire.since == T0  # when the first attempt began, not now
    assert wire.sent == ["m2"]
    assert await log.deliver(SESSION, reply("m2"), []) == delivery
    assert len(wire.calls) == 2


async def test_an_interrupted_send_that_never_went_out_is_sent_again_once(store: Any) -> None:
    wire = Wire("die before send")
    log = DeliveryLog(store, wire)
    await killed_mid_send(log, reply("m3"))
    delivery = await log.deliver(SESSION, reply("m3"), [])
    assert delivery.state is DeliveryState.SENT
    assert wire.calls == [("deliver", "m3"), ("reconcile", "m3"), ("deliver", "m3")]
    assert wire.sent == ["m3"]
    record = await log.get("m3")
    assert record is not None and record.tries == 2 and record.started_at is not None


async def test_a_channel_that_cannot_look_fails_a_reply_in_doubt_and_never_resends(
    store: Any,
) -> None:
    wire = Wire("die after send", AmbiguousWriteError("no answer after the data"),
                reconciles=False)
    log = DeliveryLog(store, wire)
    await killed_mid_send(log, reply("m4"))
    doubt = await log.deliver(SESSION, reply("m4"), [])
    assert doubt.state is DeliveryState.FAILED
    assert "may have accepted it" in doubt.detail and "not sent again" in doubt.detail
    assert wire.calls == [("deliver", "m4")]
    assert await log.deliver(SESSION, reply("m4"), []) == doubt
    # An ambiguous answer on such a channel is the same rule, at once.
    ambiguous = await log.deliver(SESSION, reply("m5"), [])
    assert ambiguous.state is DeliveryState.FAILED
    assert "no answer after the data" in ambiguous.detail and "not sent again" in ambiguous.detail
    assert wire.sent == ["m4", "m5"]


async def test_a_lookup_the_channel_cannot_make_leaves_the_reply_failed_not_resent(
    store: Any,
) -> None:
    wire = Wire("die after send")
    log = DeliveryLog(store, wire)
    await killed_mid_send(log, reply("m11"))

    async def refused(*args: Any) -> Delivery | None:
        raise PermanentError("HTTP 401 listing messages")

    wire.reconcile_delivery = refused  # type: ignore[method-assign]
    doubt = await log.deliver(SESSION, reply("m11"), [])
    assert doubt.state is DeliveryState.FAILED
    assert "HTTP 401 listing messages" in doubt.detail and "not sent again" in doubt.detail
    assert wire.sent == ["m11"]


async def test_an_ambiguous_send_is_looked_up_on_the_next_attempt(store: Any) -> None:
    wire = Wire(AmbiguousWriteError("timed out after sending"))
    log = DeliveryLog(store, wire)
    with pytest.raises(AmbiguousWriteError):
        await log.deliver(SESSION, reply("m6"), [])
    delivery = await log.deliver(SESSION, reply("m6"), [])
    assert delivery == Delivery(DeliveryState.SENT, "wire-m6")
    assert wire.calls == [("deliver", "m6"), ("reconcile", "m6")] and wire.sent == ["m6"]


async def test_a_transient_failure_sends_on_the_next_attempt_without_a_lookup(
    store: Any,
) -> None:
    wire = Wire(TransientError("503", retry_after=30))
    log = DeliveryLog(store, wire)
    with pytest.raises(TransientError) as caught:
        await log.deliver(SESSION, reply("m7"), [])
    assert caught.value.retry_after == 30
    record = await log.get("m7")
    assert record is not None and record.stage is Stage.NOT_SENT
    assert (await log.deliver(SESSION, reply("m7"), [])).state is DeliveryState.SENT
    assert wire.calls == [("deliver", "m7"), ("deliver", "m7")]


async def test_a_permanent_error_is_a_recorded_failure(store: Any) -> None:
    wire = Wire(PermanentError("550 no such user"))
    log = DeliveryLog(store, wire)
    failed = await log.deliver(SESSION, reply("m8"), [])
    assert failed == Delivery(DeliveryState.FAILED, detail="550 no such user")
    assert await log.deliver(SESSION, reply("m8"), []) == failed
    assert wire.calls == [("deliver", "m8")]


async def test_a_record_changed_by_another_worker_is_not_overwritten(store: Any) -> None:
    log = DeliveryLog(store, Wire())
    taken = Attempt("m9", "wire", Stage.SENDING, T0).as_json()

    class Racing:
        """Another worker claims the reply between this one's read and its claim."""

        async def get_state(self, plugin: str, key: str) -> Any:
            value = await store.get_state(plugin, key)
            await store.put_state(plugin, key, taken)
            return value

        compare_and_put_state = store.compare_and_put_state

    log.store = Racing()
    with pytest.raises(TransientError, match="another worker"):
        await log.deliver(SESSION, reply("m9"), [])
    assert await store.get_state(NAMESPACE, "m9") == taken


async def test_an_unreadable_record_is_a_clear_error(store: Any) -> None:
    await store.put_state(NAMESPACE, "m10", {"stage": "launched"})
    with pytest.raises(ValueError, match="delivery log record of m10 is unreadable"):
        await DeliveryLog(store, Wire()).deliver(SESSION, reply("m10"), [])


delivery_values = st.none() | st.builds(
    Delivery, st.sampled_from(DeliveryState), st.text(max_size=20), st.text(max_size=40),
    st.integers(0, 20))


@given(stage=st.sampled_from([Stage.SENDING, Stage.NOT_SENT]), tries=st.integers(1, 100),
       delivery=delivery_values, started=st.datetimes(timezones=st.just(UTC)),
       channel=st.text(min_size=1, max_size=10))
def test_a_record_reads_back_as_written(stage: Stage, tries: int, delivery: Delivery | None,
                                        started: datetime, channel: str) -> None:
    # An outcome makes a record done; without one it is still under way.
    attempt = Attempt("m", channel, stage if delivery is None else Stage.DONE, started, tries,
                      delivery)
    assert Attempt.from_json("m", attempt.as_json()) == attempt


def test_a_done_record_without_its_outcome_is_refused() -> None:
    broken = Attempt("m", "wire", Stage.DONE, T0).as_json()
    with pytest.raises(ValueError, match="unreadable"):
        Attempt.from_json("m", broken)


# -- through the pipeline ---------------------------------------------------------------


class ProviderChannel(LoopChannel):
    """A loop channel that can look its sends up, and whose first send is cut off by a kill
    after it went out."""

    def __init__(self) -> None:
        super().__init__()
        self.kill_next = True
        self.lookups: list[str] = []

    @hookimpl
    async def deliver_reply(self, message: Message) -> Delivery:
        delivery = await super().deliver_reply(message)
        if self.kill_next:
            self.kill_next = False
            await anyio.sleep_forever()
        return delivery

    @hookimpl
    async def reconcile_delivery(self, message: Message) -> Delivery | None:
        self.lookups.append(message.id)
        if any(m.id == message.id for m in self.sent):
            return Delivery(DeliveryState.SENT, external_id=f"found-{message.id}")
        return None


async def test_hook_reconcile_delivery_a_reply_killed_mid_send_reaches_the_customer_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_jsonl(monkeypatch, tmp_path)
    channel = ProviderChannel()
    bridge = Bridge.from_config(write_config(tmp_path, bridge={}), plugins={"loop": channel})
    await bridge.open()
    try:
        await bridge.receive(inbound("where is my parcel", msg_id="k1"))
        await settle(bridge)
        session = await only_session(bridge)
        replies = bridge.pipeline.replies
        message = outbound_message(session, recipient=await replies.reply_address(session),
                                   message_id="m-kill", author=Author.AGENT, text="On its way")
        with anyio.move_on_after(0.3):
            await replies.deliver(session, message, Run(1, None, utcnow()))
        # The outbox runs the job again once the dead runner's lease ends.
        await replies.deliver(session, message, Run(2, None, utcnow()))
        assert [m.id for m in channel.sent] == ["m-kill"]
        assert channel.lookups == ["m-kill"]
        record = await deliveries.get(bridge.store, "m-kill")
        assert record is not None and record.external_id == "found-m-kill"
        assert record.state.value == "sent"
    finally:
        await bridge.close()
