"""The write log (:class:`~casebridge.store.WriteLog`) on every backend: one record per CRM
write, its attempts and its outcome."""

from __future__ import annotations

import pytest
from casebridge.store import RecordNotFound, WriteLog
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
