"""The conversation store (:class:`~casebridge.store.ConversationStore`) on every backend:
contacts, sessions, messages and dropped inbounds."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from casebridge.model import (
    Attachment,
    Author,
    CaseLink,
    Contact,
    Direction,
    Message,
    RawInbound,
    Session,
    SessionStatus,
)
from casebridge.store import RecordNotFound, Store
from casebridge.store.sqlite import SqliteStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.stores import (
    T0,
    FakeClock,
    job_for,
    make_message,
    stored_contact,
    stored_session,
)

pytestmark = pytest.mark.anyio


# -- contacts -------------------------------------------------------------------------------


async def test_contact_round_trip(store: Store) -> None:
    contact = Contact(
        id="c1",
        name="Ann Lee",
        emails=("ann@example.com", "a.lee@work.example"),
        phones=("+15550001111", "+447700900123"),
        crm_id="crm-9",
    )
    assert await store.create_contact(contact) == contact
    assert await store.get_contact("c1") == contact
    assert await store.get_contact("nobody") is None


async def test_find_contact_by_any_address(store: Store) -> None:
    ann = await store.create_contact(Contact(id="c1", emails=("ann@example.com",)))
    bob = await store.create_contact(Contact(id="c2", phones=("+15550002222",)))
    assert await store.find_contact(["ann@example.com"], []) == ann
    assert await store.find_contact([], ["+15550002222"]) == bob
    assert await store.find_contact(["x@example.com"], ["+15550002222"]) == bob
    assert await store.find_contact(["ann@example.com"], ["+15550002222"]) == ann
    assert await store.find_contact(["x@example.com"], ["+19999999999"]) is None


async def test_create_contact_returns_the_owner_of_a_taken_address(store: Store) -> None:
    ann = await store.create_contact(Contact(id="c1", emails=("ann@example.com",)))
    again = await store.create_contact(
        Contact(id="c2", emails=("new@example.com", "ann@example.com"))
    )
    assert again == ann
    assert await store.get_contact("c2") is None
    assert await store.find_contact(["new@example.com"], []) is None
    assert await store.create_contact(Contact(id="c1", name="other")) == ann


async def test_set_contact_crm_id(store: Store) -> None:
    await stored_contact(store)
    assert (await store.set_contact_crm_id("c1", "guid-1")).crm_id == "guid-1"
    assert (await store.get_contact("c1")).crm_id == "guid-1"  # type: ignore[union-attr]
    with pytest.raises(RecordNotFound):
        await store.set_contact_crm_id("nobody", "guid-2")


# -- sessions -------------------------------------------------------------------------------


async def test_session_round_trip_and_updates(store: Store, clock: FakeClock) -> None:
    contact = await stored_contact(store)
    session = Session(
        id="s1",
        channel="sms",
        contact=contact,
        status=SessionStatus.ASSISTANT,
        channel_address="+15550009999",
        subject="Broken kettle",
        case=CaseLink(crm="creatio", case_id="case-1", number="SR0001", url="https://crm/c1"),
        created_at=T0,
        updated_at=T0,
    )
    assert await store.create_session(session) == session
    assert await store.get_session("s1") == session
    assert await store.create_session(replace(session, subject="ignored")) == session

    clock.advance(minutes=5)
    case = CaseLink(crm="creatio", case_id="case-2")
    updated = await store.update_session(
        "s1", status=SessionStatus.HANDED_OFF, case=case, subject="Kettle"
    )
    assert updated == replace(
        session,
        status=SessionStatus.HANDED_OFF,
        case=case,
        subject="Kettle",
        updated_at=clock.now,
    )
    assert await store.get_session("s1") == updated
    assert (await store.update_session("s1")).status is SessionStatus.HANDED_OFF
    with pytest.raises(RecordNotFound):
        await store.update_session("missing", status=SessionStatus.CLOSED)


async def test_a_session_needs_a_stored_contact(store: Store) -> None:
    with pytest.raises(RecordNotFound, match="create_contact"):
        await stored_session(store, Contact(id="ghost"))


async def test_find_open_session(store: Store, clock: FakeClock) -> None:
    ann = await stored_contact(store, 1)
    bob = await stored_contact(store, 2)
    old = await stored_session(store, ann, "old")
    new = await stored_session(store, ann, "new", created_at=T0 + timedelta(hours=1))
    await stored_session(store, ann, "other-address", channel_address="sales@example.org")
    await stored_session(store, bob, "bob")
    await store.add_message(make_message(1, session_id="old", received_at=T0 + timedelta(hours=2)))

    find = store.find_open_session
    assert (await find("email", ann.id, "support@example.org", T0 - timedelta(days=1))) == (
        await store.get_session("old")
    )
    await store.update_session("old", status=SessionStatus.CLOSED)
    got = await find("email", ann.id, "support@example.org", T0 - timedelta(days=1))
    assert got is not None and got.id == new.id
    assert await find("email", ann.id, "support@example.org", T0 + timedelta(hours=1)) is None
    assert await find("sms", ann.id, "support@example.org", T0 - timedelta(days=1)) is None
    bobs = await find("email", bob.id, "support@example.org", T0 - timedelta(days=1))
    assert bobs is not None and bobs.id == "bob"
    assert old.status is SessionStatus.ASSISTANT


async def test_find_session_by_external_ids(store: Store) -> None:
    contact = await stored_contact(store)
    await stored_session(store, contact, "s1")
    await stored_session(store, contact, "s2")
    await store.add_message(make_message(1, session_id="s1", external_id="<out-1@us>"))
    await store.add_message(make_message(2, session_id="s2", external_id="<out-2@us>"))
    await store.add_message(make_message(3, external_id="<loose@us>"))
    await store.add_message(make_message(4, channel="sms", session_id="s1", external_id="SM4"))

    by_ids = store.find_session_by_external_ids
    assert (await by_ids("email", ["<x@y>", "<out-1@us>"])).id == "s1"  # type: ignore[union-attr]
    both = ["<out-1@us>", "<out-2@us>"]
    assert (await by_ids("email", both)).id == "s2"  # type: ignore[union-attr]
    assert await by_ids("email", ["<loose@us>"]) is None
    assert await by_ids("email", ["SM4"]) is None
    assert await by_ids("email", []) is None
    many = [f"<ref-{i}@x>" for i in range(1200)] + ["<out-1@us>"]
    assert (await by_ids("email", many)).id == "s1"  # type: ignore[union-attr]


async def test_find_session_by_case(store: Store) -> None:
    contact = await stored_contact(store)
    await stored_session(store, contact, "s1")
    await store.update_session("s1", case=CaseLink(crm="creatio", case_id="case-1"))
    assert (await store.find_session_by_case("creatio", "case-1")).id == "s1"  # type: ignore[union-attr]
    assert await store.find_session_by_case("other", "case-1") is None
    assert await store.find_session_by_case("creatio", "case-2") is None


async def test_sessions_by_case_lists_every_linked_session_newest_first(store: Store) -> None:
    contact = await stored_contact(store)
    case = CaseLink(crm="creatio", case_id="case-1")
    for n in range(3):
        await stored_session(store, contact, f"s{n}", created_at=T0 + timedelta(minutes=n))
    await stored_session(store, contact, "unlinked")
    for sid in ("s0", "s2", "s1"):
        await store.update_session(sid, case=case)
    assert [s.id for s in await store.sessions_by_case("creatio", "case-1")] == ["s2", "s1", "s0"]
    assert (await store.find_session_by_case("creatio", "case-1")).id == "s2"  # type: ignore[union-attr]
    assert await store.sessions_by_case("creatio", "case-9") == []
    assert await store.sessions_by_case("other", "case-1") == []


async def test_list_and_count_sessions(store: Store, clock: FakeClock) -> None:
    contact = await stored_contact(store)
    for n in range(5):
        await stored_session(store, contact, f"s{n}", updated_at=T0 + timedelta(minutes=n))
    clock.now = T0 + timedelta(hours=1)
    await store.update_session("s1", status=SessionStatus.CLOSED)

    assert [s.id for s in await store.list_sessions()] == ["s1", "s4", "s3", "s2", "s0"]
    assert [s.id for s in await store.list_sessions(limit=2, offset=1)] == ["s4", "s3"]
    closed = await store.list_sessions(status=SessionStatus.CLOSED)
    assert [s.id for s in closed] == ["s1"]
    assert await store.count_sessions() == 5
    assert await store.count_sessions(SessionStatus.ASSISTANT) == 4
    assert await store.count_sessions(SessionStatus.HANDED_OFF) == 0


# -- messages -------------------------------------------------------------------------------


async def test_message_round_trip_keeps_every_field(store: Store) -> None:
    paris = timezone(timedelta(hours=2))
    message = Message(
        id="m1",
        channel="email",
        direction=Direction.OUTBOUND,
        author=Author.AGENT,
        external_id="<reply-1@us>",
        sender="support@example.org",
        recipients=("ann@example.com", "cc@example.com"),
        text="Thanks!",
        original_text="Thanks!\n> quoted",
        html="<p>Thanks!</p>",
        subject="Re: kettle",
        sender_name="Support",
        attachments=(
            Attachment("a.pdf", "application/pdf", 10, "ab" * 32, "att/a.pdf", "cid1", True),
            Attachment("big.bin", "application/octet-stream", 9, "cd" * 32, refused="too big"),
        ),
        thread_refs=("<1@x>", "<2@x>"),
        sent_at=datetime(2026, 3, 1, 11, 30, 0, 123456, tzinfo=paris),
        received_at=T0,
        trace_id="trace-1",
        notes=("charset fallback",),
        meta={"provider": "x", "ünï": "cödé\x00"},
    )
    assert await store.add_message(message)
    got = await store.get_message("m1")
    assert got == message
    assert got is not None and got.sent_at.utcoffset() == timedelta(0)
    assert got.direction is Direction.OUTBOUND and got.author is Author.AGENT
    assert dict(got.meta) == {"provider": "x", "ünï": "cödé\x00"}
    assert await store.get_message("nope") is None


zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
times = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=zones
)
texts = st.text(max_size=40)
attachments = st.builds(
    Attachment,
    name=texts,
    content_type=texts,
    size=st.integers(min_value=0, max_value=2**40),
    sha256=texts,
    location=texts,
    content_id=texts,
    inline=st.booleans(),
    refused=texts,
)
messages = st.builds(
    Message,
    id=st.just("set-by-the-test"),
    channel=st.sampled_from(["email", "sms", "whatsapp"]),
    direction=st.sampled_from(Direction),
    author=st.sampled_from(Author),
    external_id=st.just("set-by-the-test"),
    sender=texts,
    recipients=st.tuples(texts, texts) | st.just(()),
    text=st.text(),
    original_text=texts,
    html=texts,
    subject=texts,
    sender_name=texts,
    attachments=st.lists(attachments, max_size=3).map(tuple),
    thread_refs=st.lists(texts, max_size=3).map(tuple),
    sent_at=times,
    received_at=times,
    trace_id=texts,
    notes=st.lists(texts, max_size=2).map(tuple),
    meta=st.dictionaries(texts, texts, max_size=4),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(message=messages)
async def test_any_message_round_trips(store: Store, message: Message) -> None:
    # Hypothesis repeats examples; fresh keys keep each one new to the shared store.
    message = replace(message, id=str(uuid.uuid4()), external_id=str(uuid.uuid4()))
    if type(store).__name__ == "PgStore" and any(
        "\x00" in getattr(message, name) for name in ("sender", "text", "original_text", "html",
                                                      "subject", "sender_name", "trace_id")
    ):
        # PostgreSQL text cannot hold NUL: refused with a clear error, nothing stored.
        with pytest.raises(ValueError, match="NUL"):
            await store.add_message(message)
        assert await store.get_message(message.id) is None
        return
    assert await store.add_message(message)
    got = await store.get_message(message.id)
    assert got == message
    assert got is not None and got.sent_at.utcoffset() == timedelta(0)


async def test_accept_inbound_stores_message_and_job_once(store: Store) -> None:
    message = make_message(1)
    assert await store.accept_inbound(message, job_for(1))
    assert not await store.accept_inbound(replace(message, id="msg-other"), job_for(99))
    assert not await store.accept_inbound(message, job_for(1))
    assert await store.get_message("msg-1") == message
    assert await store.get_message("msg-other") is None
    jobs = await store.list_jobs()
    assert [(j.kind, j.key, j.payload) for j in jobs] == [
        ("thread", "thread:1", {"message_id": "msg-1"})
    ]


async def test_accept_inbound_is_one_transaction(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    async def broken_async(*args: object) -> None:
        broken()

    if isinstance(store, SqliteStore):
        monkeypatch.setattr(SqliteStore, "_insert_jobs", staticmethod(broken))
    else:  # PostgreSQL: the job queue's insert, inside the same transaction
        monkeypatch.setattr(type(store), "_insert_jobs_in", broken_async)
    with pytest.raises(sqlite3.OperationalError):
        await store.accept_inbound(make_message(1), job_for(1))
    assert await store.get_message("msg-1") is None


async def test_add_message_refuses_duplicates_by_external_id_or_id(store: Store) -> None:
    assert await store.add_message(make_message(1))
    assert not await store.add_message(make_message(1, id="other"))
    assert not await store.add_message(make_message(1, external_id="<fresh@x>"))
    assert await store.add_message(make_message(1, id="sms", channel="sms"))
    assert await store.add_message(make_message(2, external_id=""))
    assert await store.add_message(make_message(3, external_id=""))
    assert (await store.get_message("msg-3")).external_id == ""  # type: ignore[union-attr]


async def test_naive_times_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="sent_at"):
        await store.add_message(make_message(1, sent_at=datetime(2026, 1, 1)))
    with pytest.raises(ValueError, match="active_since"):
        await store.find_open_session("email", "c1", "", datetime(2026, 1, 1))


async def test_assign_message_and_transcript_order(store: Store) -> None:
    contact = await stored_contact(store)

    async def active(sid: str, since: datetime) -> str | None:
        found = await store.find_open_session("email", contact.id, "support@example.org", since)
        return None if found is None else found.id

    await stored_session(store, contact, "s1")
    await stored_session(store, contact, "s2")
    # Arrival order, not the times the messages claim.
    for n, seconds in ((1, 50), (2, 10), (3, 30)):
        await store.accept_inbound(
            make_message(n, received_at=T0 + timedelta(seconds=seconds)), job_for(n)
        )
    assert await store.transcript("s1") == []
    assert await store.transcript("") == []
    for n in (3, 1, 2):
        got = await store.assign_message(f"msg-{n}", "s1")
        assert got.session_id == "s1"
    assert await store.assign_message("msg-1", "s1") == await store.get_message("msg-1")
    assert [m.id for m in await store.transcript("s1")] == ["msg-1", "msg-2", "msg-3"]
    # The latest message (received T0+50s) is the session's last activity; s2 has none.
    assert await active("s1", since=T0 + timedelta(seconds=49)) == "s1"
    assert await active("s1", since=T0 + timedelta(seconds=50)) is None
    with pytest.raises(ValueError, match="belongs to session 's1'"):
        await store.assign_message("msg-1", "s2")
    with pytest.raises(RecordNotFound):
        await store.assign_message("missing", "s1")
    await store.add_message(make_message(4, session_id="s1", received_at=T0 + timedelta(hours=1)))
    assert await active("s1", since=T0 + timedelta(minutes=59)) == "s1"
    assert [m.id for m in await store.transcript("s1")][-1] == "msg-4"


async def test_a_session_opened_with_its_first_message(store: Store) -> None:
    contact = await stored_contact(store)

    async def open_with(sid: str, message_id: str) -> Session:
        return await store.create_session(
            Session(id=sid, channel="email", contact=contact, status=SessionStatus.ASSISTANT,
                    channel_address="support@example.org", created_at=T0, updated_at=T0),
            first_message=message_id)

    for n in (1, 2):
        await store.accept_inbound(make_message(n, received_at=T0 + timedelta(seconds=n)),
                                   job_for(n))
    opened = await open_with("s1", "msg-1")
    assert opened == await store.get_session("s1")
    assert [m.id for m in await store.transcript("s1")] == ["msg-1"]
    assert (await store.get_message("msg-1")).session_id == "s1"  # type: ignore[union-attr]
    # The message's time is the session's last activity, as assign_message makes it.
    found = await store.find_open_session("email", contact.id, "support@example.org",
                                          T0 + timedelta(milliseconds=500))
    assert found is not None and found.id == "s1"
    # Again (a re-run): the same session, the message where it was.
    assert await open_with("s1", "msg-1") == opened
    # A message of another session, or none at all: refused, and no session is made.
    with pytest.raises(ValueError, match="belongs to session 's1'"):
        await open_with("s2", "msg-1")
    with pytest.raises(RecordNotFound):
        await open_with("s3", "missing")
    assert await store.get_session("s2") is None and await store.get_session("s3") is None
    assert (await store.get_message("msg-2")).session_id == ""  # type: ignore[union-attr]


async def test_a_message_for_an_unknown_session_is_refused(store: Store) -> None:
    with pytest.raises(RecordNotFound, match="ghost"):
        await store.add_message(make_message(1, session_id="ghost"))
    assert await store.get_message("msg-1") is None


# -- dropped inbounds ---------------------------------------------------------------------


async def test_record_dropped_is_idempotent(store: Store, clock: FakeClock) -> None:
    await store.record_dropped("email", "<a@x>", "mailer-daemon@x", "bounce", T0)
    await store.record_dropped("email", "<a@x>", "mailer-daemon@x", "again", T0)
    clock.advance(seconds=1)
    await store.record_dropped("sms", "SM1", "+15550001111", "opt-out: STOP", T0)
    dropped = await store.list_dropped(10)
    assert [(d.channel, d.external_id, d.reason) for d in dropped] == [
        ("sms", "SM1", "opt-out: STOP"),
        ("email", "<a@x>", "bounce"),
    ]
    assert dropped[0].received_at == T0 and dropped[0].recorded_at == clock.now
    assert len(await store.list_dropped(1)) == 1


async def test_session_ids_with_prefix_in_id_order(store: Store) -> None:
    contact = await stored_contact(store)
    ids = ["ab12", "ab1", "ab2", "b1", "a", "ab%", "ab_x", "abé"]
    for sid in ids:
        await stored_session(store, contact, sid)
    assert await store.session_ids_with_prefix("ab") == ["ab%", "ab1", "ab12", "ab2", "ab_x",
                                                        "abé"]
    assert await store.session_ids_with_prefix("ab1") == ["ab1", "ab12"]
    assert await store.session_ids_with_prefix("ab", limit=2) == ["ab%", "ab1"]
    # Wildcards are plain characters: "%" and "_" match only themselves.
    assert await store.session_ids_with_prefix("ab%") == ["ab%"]
    assert await store.session_ids_with_prefix("ab_") == ["ab_x"]
    assert await store.session_ids_with_prefix("c") == []
    assert await store.session_ids_with_prefix("") == sorted(ids)[:10]


# -- raw inbounds, parsed later ----------------------------------------------------------


def _raw(n: int, payload: bytes = b"") -> RawInbound:
    return RawInbound(
        channel="email",
        payload=payload or f"Subject: hello {n}\r\n\r\nbody {n}\r\n".encode(),
        fields={"envelope_from": f"ann{n}@example.com", "rcpt": "support@example.com"},
        sender=f"ann{n}@example.com",
        transport_id="",
        peer="127.0.0.1:40000",
        received_at=T0 + timedelta(seconds=n),
    )


async def test_a_kept_raw_inbound_round_trips_with_its_job(store: Store) -> None:
    binary = bytes(range(256)) * 3  # every byte value, NUL included
    raw = _raw(1, binary)
    await store.accept_raw("raw-1", raw, job_for(1))
    assert await store.get_raw("raw-1") == raw
    assert await store.get_raw("raw-2") is None
    assert await store.count_raw() == 1
    assert [j.key for j in await store.list_jobs()] == ["thread:1"]
    with pytest.raises(ValueError, match="raw-1"):
        await store.accept_raw("raw-1", _raw(2), job_for(2))
    assert [j.key for j in await store.list_jobs()] == ["thread:1"]  # nothing half-written
    await store.delete_raw("raw-1")
    await store.delete_raw("raw-1")  # already gone: nothing happens
    assert await store.get_raw("raw-1") is None
    assert await store.count_raw() == 0


async def test_accepting_a_parsed_raw_inbound_lets_it_go_in_the_same_transaction(
    store: Store,
) -> None:
    await store.accept_raw("raw-1", _raw(1), job_for(1))
    await store.accept_raw("raw-2", _raw(2), job_for(2))
    assert await store.accept_inbound(make_message(1), job_for(11), parsed_raw="raw-1")
    assert await store.get_raw("raw-1") is None
    # A second copy of a stored message (a re-sent mail) is a duplicate, and its raw inbound
    # is let go all the same.
    assert not await store.accept_inbound(make_message(1), job_for(12), parsed_raw="raw-2")
    assert await store.count_raw() == 0
    assert sorted(j.key for j in await store.list_jobs()) == ["thread:1", "thread:11",
                                                              "thread:2"]
