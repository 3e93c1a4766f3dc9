"""The row conversions both backends share (pure): any message, job and write survives the
trip through a row under either time encoding, and SQLite's time text sorts as time does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from casebridge.model import Attachment, Author, Direction, Message
from casebridge.store.rows import MAX_ERROR_CHARS, POSTGRES, SQLITE, Rows, error_text
from hypothesis import given
from hypothesis import strategies as st

BACKENDS = pytest.mark.parametrize("rows", [SQLITE, POSTGRES], ids=["sqlite", "postgres"])

zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
times = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                     timezones=zones)
texts = st.text(max_size=30)
messages = st.builds(
    Message,
    id=texts,
    channel=texts,
    direction=st.sampled_from(Direction),
    author=st.sampled_from(Author),
    external_id=texts,
    sender=texts,
    recipients=st.lists(texts, max_size=3).map(tuple),
    text=st.text(),
    original_text=texts,
    html=texts,
    subject=texts,
    sender_name=texts,
    attachments=st.lists(st.builds(Attachment, name=texts, content_type=texts,
                                   size=st.integers(0, 2**40), sha256=texts, location=texts,
                                   content_id=texts, inline=st.booleans(), refused=texts),
                         max_size=2).map(tuple),
    thread_refs=st.lists(texts, max_size=3).map(tuple),
    sent_at=times,
    received_at=times,
    session_id=texts,
    trace_id=texts,
    notes=st.lists(texts, max_size=2).map(tuple),
    meta=st.dictionaries(texts, texts, max_size=3),
)


def _nul_free(m: Message) -> bool:
    return not any("\x00" in getattr(m, name) for name in
                   ("id", "channel", "external_id", "session_id", "sender", "text",
                    "original_text", "html", "subject", "sender_name", "trace_id"))


@BACKENDS
@given(message=messages)
def test_a_message_survives_its_row(rows: Rows, message: Message) -> None:
    if not rows.text_holds_nul and not _nul_free(message):
        with pytest.raises(ValueError, match="NUL"):
            rows.message_row(message)
        return
    row = rows.message_row(message)
    back = rows.message(row)
    assert back == message
    assert back.sent_at.utcoffset() == timedelta(0)


@given(a=times, b=times)
def test_sqlite_time_text_sorts_as_time(a: datetime, b: datetime) -> None:
    ta, tb = SQLITE.ts(a), SQLITE.ts(b)
    assert len(ta) == len(tb)
    assert (ta < tb) == (a < b) and (ta == tb) == (a == b)
    assert SQLITE.dt(ta) == a


@BACKENDS
def test_a_naive_time_is_refused_by_name(rows: Rows) -> None:
    with pytest.raises(ValueError, match="run_at must be a timezone-aware"):
        rows.ts(datetime(2026, 1, 1), "run_at")


@BACKENDS
@given(at=times, lease=st.none() | times)
def test_a_job_row_becomes_a_job(rows: Rows, at: datetime, lease: datetime | None) -> None:
    row: dict[str, Any] = {
        "id": 7, "kind": "inbound", "payload": '{"m":1}', "key": "k", "order_key": "o",
        "state": "running", "attempts": 2, "max_attempts": None, "run_at": rows.ts(at),
        "lease_until": None if lease is None else rows.ts(lease), "worker_id": "w",
        "last_error": "", "trace_id": "t", "created_at": rows.ts(at), "updated_at": rows.ts(at),
    }
    job = rows.job(row)
    assert (job.payload, job.run_at, job.lease_until) == ({"m": 1}, at, lease)
    assert job.run_at.utcoffset() == timedelta(0)


@given(error=st.text(max_size=MAX_ERROR_CHARS + 50))
def test_an_error_is_cut_to_the_limit(error: str) -> None:
    kept = error_text(error)
    assert len(kept) <= MAX_ERROR_CHARS
    assert kept == error if len(error) <= MAX_ERROR_CHARS else kept.endswith("…")
