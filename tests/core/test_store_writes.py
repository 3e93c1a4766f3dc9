"""The write log (:class:`~casebridge.store.WriteLog`) on every backend: one record per CRM
write, its attempts and its outcome."""

from __future__ import annotations

import pytest
from casebridge.store import RecordNotFound, WriteIntent, WriteLog
from support.stores import T0, FakeClock

pytestmark = pytest.mark.anyio


async def test_record_intent_once_per_session_message_kind(
    store: WriteLog, clock: FakeClock
) -> None:
    first = await store.record_intent("s1", "", "case", "creatio", "k-case")
    assert (first.state, first.attempts, first.crm_id, first.maybe_written) == (
        "intent",
        1,
        "",
        False,
    )
    clock.advance(seconds=5)
    again = await store.record_intent("s1", "", "case", "creatio", "k-other")
    assert again.key == "k-case" and again.attempts == 2 and again.maybe_written
    assert again.created_at == T0 and again.updated_at == clock.now

    await store.record_written("k-case", "case-guid")
    await store.record_written("k-case", "case-guid")
    written = await store.record_intent("s1", "", "case", "creatio", "k-case")
    assert (written.state, written.crm_id, written.attempts) == ("written", "case-guid", 2)
    assert not written.maybe_written
    assert await store.get_write("k-case") == written

    with pytest.raises(ValueError, match="second CRM id"):
        await store.record_written("k-case", "another-guid")
    with pytest.raises(RecordNotFound):
        await store.record_written("nope", "x")
    with pytest.raises(ValueError, match="already used"):
        await store.record_intent("s1", "m1", "activity", "creatio", "k-case")
    with pytest.raises(ValueError, match="kind"):
        await store.record_intent("s1", "m1", "note", "creatio", "k-x")  # type: ignore[arg-type]
    assert await store.get_write("nope") is None

    activity = await store.record_intent("s1", "m1", "activity", "creatio", "k-m1")
    assert activity.kind == "activity" and activity.message_id == "m1"


async def test_record_intents_and_all_written_in_one_transaction_each(
    store: WriteLog, clock: FakeClock
) -> None:
    intents = [WriteIntent("s2", "", "case", "creatio", "c"),
               WriteIntent("s2", "m1", "activity", "creatio", "a1"),
               WriteIntent("s2", "m2", "activity", "creatio", "a2")]
    first = await store.record_intents(intents)
    assert [(w.key, w.kind, w.attempts, w.state) for w in first] == [
        ("c", "case", 1, "intent"), ("a1", "activity", 1, "intent"),
        ("a2", "activity", 1, "intent")]
    assert await store.record_intents([]) == []
    # A write recorded meanwhile comes back as written; the others count an attempt more.
    await store.record_written("a1", "guid-a1")
    again = await store.record_intents(intents)
    assert [(w.key, w.attempts, w.maybe_written) for w in again] == [
        ("c", 2, True), ("a1", 1, False), ("a2", 2, True)]
    assert again[1].crm_id == "guid-a1"

    # A key taken by another write refuses the whole batch: nothing of it is recorded.
    with pytest.raises(ValueError, match="'a2' is already used"):
        await store.record_intents([WriteIntent("s2", "m3", "activity", "creatio", "a3"),
                                    WriteIntent("s2", "m4", "activity", "creatio", "a2")])
    assert await store.get_write("a3") is None
    with pytest.raises(ValueError, match="kind"):
        await store.record_intents([WriteIntent("s2", "m5", "note", "creatio", "a5")])  # type: ignore[arg-type]

    # All written in one go; an unknown key or a second id rolls every one of them back.
    with pytest.raises(RecordNotFound):
        await store.record_all_written([("c", "guid-c"), ("nope", "x")])
    with pytest.raises(ValueError, match="second CRM id"):
        await store.record_all_written([("c", "guid-c"), ("a1", "another")])
    assert (await store.get_write("c")).state == "intent"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="must not be empty"):
        await store.record_all_written([("c", "guid-c"), ("a2", "")])
    clock.advance(seconds=3)
    await store.record_all_written([("c", "guid-c"), ("a1", "guid-a1"), ("a2", "guid-a2")])
    await store.record_all_written([])
    found = await store.get_writes(["a2", "c", "nope", "c"])
    assert sorted(found) == ["a2", "c"]
    assert (found["c"].state, found["c"].crm_id, found["c"].updated_at) == (
        "written", "guid-c", clock.now)
    assert found["a2"].crm_id == "guid-a2" and await store.get_writes([]) == {}
