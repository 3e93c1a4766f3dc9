"""The typed jobs (casebridge.jobs): every kind survives its outbox record, payloads written
by earlier versions still decode, keys are what they always were, and a payload no retry
can mend is a permanent error."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from casebridge.errors import PermanentError
from casebridge.jobs import (
    JOB_TYPES,
    AckJob,
    AnswerJob,
    AttachJob,
    ClosedJob,
    CloseJob,
    HandoffJob,
    InboundJob,
    IngestJob,
    ReplyJob,
    SyncJob,
    TypedJob,
    UndeliveredJob,
    crm_event_jobs,
    decode,
    session_of,
)
from casebridge.model import AddressKind, CrmEvent, HandoffDecision, Reply, derived_id
from casebridge.store import Job, NewJob
from hypothesis import given
from hypothesis import strategies as st

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def stored(new: NewJob, *, attempts: int = 1) -> Job:
    """The record a store gives back for ``new`` (its payload through JSON, as a store
    keeps it)."""
    import json

    return Job(id=1, kind=new.kind, payload=json.loads(json.dumps(dict(new.payload))),
               key=new.key, order_key=new.order_key, state="running", attempts=attempts,
               max_attempts=new.max_attempts, run_at=NOW, lease_until=None, worker_id="w",
               last_error="", trace_id=new.trace_id, created_at=NOW, updated_at=NOW)


def old_job(kind: str, payload: dict[str, Any]) -> Job:
    return stored(NewJob(kind=kind, payload=payload, key=f"{kind}:old"))


text = st.text(max_size=20)
times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                     timezones=st.just(UTC))
kinds = st.sampled_from(list(AddressKind))
JOBS = st.one_of(
    st.builds(IngestJob, text, text, text, text),
    st.builds(InboundJob, text, text, st.none() | kinds, text, text),
    st.builds(AckJob, text, text, text),
    st.builds(AnswerJob, text, text, text, text),
    st.builds(HandoffJob, text, text, text, text),
    st.builds(SyncJob, text, text, st.none() | times, text),
    st.builds(AttachJob, text, text, text, text),
    st.builds(ReplyJob, text, text, text, text, text, text, text),
    st.builds(ClosedJob, text, text, text, text),
    st.builds(CloseJob, text, text),
    st.builds(UndeliveredJob, text, text),
)


@given(JOBS)
def test_every_job_survives_its_outbox_record(job: TypedJob) -> None:
    record = stored(job.to_new_job())
    assert record.kind == job.kind
    assert decode(record) == job
    assert type(job).from_job(record) == job


def test_every_kind_the_pipeline_handles_is_typed() -> None:
    assert set(JOB_TYPES) == {"ingest", "inbound", "ack", "answer", "handoff", "sync", "attach",
                              "reply", "closed", "close", "undelivered"}
    for cls in JOB_TYPES.values():
        assert dataclasses.is_dataclass(cls)
        assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]


# Payloads exactly as the untyped pipeline wrote them, before casebridge.jobs.
OLD_PAYLOADS = [
    (InboundJob("m1", "t1"), "inbound", {"message_id": "m1", "trace_id": "t1"}),
    (AckJob("s1", "m1", "t1"), "ack", {"session_id": "s1", "in_reply_to": "m1",
                                        "trace_id": "t1"}),
    (AnswerJob("s1", "Hello", "m1", "t1"), "answer",
     {"session_id": "s1", "text": "Hello", "in_reply_to": "m1", "trace_id": "t1"}),
    (HandoffJob("s1", "asked", "api", "t1"), "handoff",
     {"session_id": "s1", "reason": "asked", "source": "api", "trace_id": "t1"}),
    (SyncJob("s1", "t1"), "sync", {"session_id": "s1", "trace_id": "t1"}),
    (SyncJob("s1", "t1", NOW), "sync",
     {"session_id": "s1", "trace_id": "t1", "decided_at": NOW.isoformat()}),
    (AttachJob("s1", "m1", "ab12", "t1"), "attach",
     {"session_id": "s1", "message_id": "m1", "sha256": "ab12", "trace_id": "t1"}),
    (ReplyJob("jsonl", "a1", "c1", "Hi", "<p>Hi</p>", "Rita", "t1"), "reply",
     {"crm": "jsonl", "activity_id": "a1", "case_id": "c1", "text": "Hi",
      "html": "<p>Hi</p>", "author_name": "Rita", "trace_id": "t1"}),
    (ClosedJob("jsonl", "c1"), "closed", {"crm": "jsonl", "case_id": "c1"}),
    (CloseJob("s1", "t1"), "close", {"session_id": "s1", "trace_id": "t1"}),
    (UndeliveredJob("m1"), "undelivered", {"message_id": "m1"}),
]


@pytest.mark.parametrize(("expected", "kind", "payload"), OLD_PAYLOADS,
                         ids=[f"{k}-{i}" for i, (_, k, _) in enumerate(OLD_PAYLOADS)])
def test_payloads_written_before_typed_jobs_still_decode(
    expected: TypedJob, kind: str, payload: dict[str, Any]
) -> None:
    assert decode(old_job(kind, payload)) == expected


@pytest.mark.parametrize(("expected", "kind", "payload"), OLD_PAYLOADS,
                         ids=[f"{k}-{i}" for i, (_, k, _) in enumerate(OLD_PAYLOADS)])
def test_the_fields_payloads_always_had_keep_their_names(
    expected: TypedJob, kind: str, payload: dict[str, Any]
) -> None:
    written = expected.to_new_job().payload
    assert {k: written[k] for k in payload} == payload


def test_keys_and_order_keys_are_unchanged() -> None:
    decision = HandoffDecision("asked", "api")
    cases = [
        (InboundJob("m1", "t", AddressKind.EMAIL, "email", "Ann@X.example"),
         "inbound:m1", "from:email:ann@x.example"),
        (AckJob("s1", "m1"), "ack:s1", "s1"),
        (AnswerJob("s1", "Hi", "m1"), "answer:m1", "s1"),
        (HandoffJob.deciding("s1", decision), "handoff:s1", "s1"),
        (SyncJob("s1", cause="m2"), "sync:s1:m2", "s1"),
        (AttachJob("s1", "m1", "ab"), "attach:s1:m1:ab", "s1"),
        (ReplyJob("crm", "a1", "c1", "Hi"), "reply:crm:a1", "case:crm:c1"),
        (ClosedJob("crm", "c1", "e1"), "closed:crm:c1:e1", ""),
        (CloseJob("s1"), "close:s1", "s1"),
        (UndeliveredJob("m1", "s1"), "undelivered:m1", "s1"),
    ]
    for job, key, order_key in cases:
        new = job.to_new_job()
        assert (new.kind, new.key, new.order_key) == (job.kind, key, order_key)


def test_a_job_carries_its_trace_id_on_the_outbox_record() -> None:
    # The outbox logs and follow-ups read the record's trace id, not the payload's.
    assert ClosedJob("crm", "c1", "e1", "trace-1").to_new_job().trace_id == "trace-1"
    assert HandoffJob("s1", "r", "api", "trace-2").to_new_job().trace_id == "trace-2"


def test_the_delivery_jobs_name_the_message_they_send() -> None:
    assert AckJob("s1", "m1").delivered_message_id == derived_id("ack", "s1")
    assert AnswerJob("s1", "Hi", "m1").delivered_message_id == derived_id("answer", "m1")
    assert ReplyJob("crm", "a1", "c1", "Hi").delivered_message_id == derived_id(
        "reply", "crm", "a1")


def test_unknown_keys_are_ignored_and_later_fields_take_their_defaults() -> None:
    job = decode(old_job("inbound", {"message_id": "m1", "from_the_future": 3}))
    assert job == InboundJob("m1")
    assert isinstance(job, InboundJob) and job.sender_kind is None


@pytest.mark.parametrize(("kind", "payload", "problem"), [
    ("handoff", {"reason": "x"}, "lacks 'session_id'"),
    ("sync", {"session_id": 7}, "must be a string"),
    ("sync", {"session_id": "s", "decided_at": "yesterday"}, "decided_at"),
    ("inbound", {"message_id": "m", "sender_kind": "pigeon"}, "sender_kind"),
    ("carrier-pigeon", {}, "no job kind"),
])
def test_a_payload_no_retry_can_mend_is_permanent(
    kind: str, payload: dict[str, Any], problem: str
) -> None:
    with pytest.raises(PermanentError, match=problem):
        decode(old_job(kind, payload))


def test_a_job_of_another_kind_is_refused() -> None:
    with pytest.raises(PermanentError, match="not a 'sync' job"):
        SyncJob.from_job(stored(CloseJob("s1").to_new_job()))


def test_crm_events_become_reply_and_closed_jobs_in_order() -> None:
    reply = Reply("crm", "a1", "c1", "Hi", author_name="Rita",
                  sent_at=NOW - timedelta(minutes=1))
    jobs = crm_event_jobs([CrmEvent("agent_reply", "crm", "c1", reply),
                           CrmEvent("case_closed", "crm", "c1")], "trace", event_id="call-1")
    assert [j.key for j in jobs] == ["reply:crm:a1", "closed:crm:c1:call-1"]
    assert all(j.trace_id == "trace" for j in jobs)
    replied = decode(stored(jobs[0]))
    assert isinstance(replied, ReplyJob)
    # Everything but the time it was sent, which a reply job never carried.
    read = replied.reply
    assert read == dataclasses.replace(reply, sent_at=read.sent_at)


def test_a_listing_reads_the_session_of_a_job_through_the_codec() -> None:
    assert session_of(stored(HandoffJob("s1", "asked").to_new_job())) == "s1"
    assert session_of(stored(UndeliveredJob("m1", "s2").to_new_job())) == "s2"
    assert session_of(stored(ReplyJob("crm", "a1", "c1", "Hi").to_new_job())) == ""
    assert session_of(old_job("sync", {"session_id": 7})) == ""
