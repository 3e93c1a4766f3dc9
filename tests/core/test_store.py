"""SqliteStore: contacts, sessions, messages, dropped inbounds, CRM writes, events, plugin
state and migrations, on real SQLite files."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import anyio
import pytest
from casebridge.model import (
    Attachment,
    Author,
    CaseLink,
    Contact,
    Direction,
    Message,
    Session,
    SessionStatus,
)
from casebridge.sqlite_store import Migration, SqliteStore, apply_migrations, load_migrations
from casebridge.store import NewJob, RecordNotFound, Store
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.stores import T0, FakeClock

pytestmark = pytest.mark.anyio



def make_message(n: int, **changes: object) -> Message:
    message = Message(
        id=f"msg-{n}",
        channel="email",
        direction=Direction.INBOUND,
        author=Author.CUSTOMER,
        external_id=f"<{n}@mail.example.com>",
        sender="ann@example.com",
        recipients=("support@example.org",),
        text=f"message {n}",
        sent_at=T0,
        received_at=T0 + timedelta(seconds=n),
    )
    return replace(message, **changes)


def job_for(n: int) -> NewJob:
    return NewJob("thread", {"message_id": f"msg-{n}"}, key=f"thread:{n}")


async def stored_contact(store: Store, n: int = 1) -> Contact:
    return await store.create_contact(
        Contact(id=f"c{n}", name=f"Ann {n}", emails=(f"ann{n}@example.com",))
    )


async def stored_session(store: Store, contact: Contact, sid: str = "s1", **kw: object) -> Session:
    session = Session(
        id=sid,
        channel="email",
        contact=contact,
        status=SessionStatus.ASSISTANT,
        channel_address="support@example.org",
        created_at=T0,
        updated_at=T0,
    )
    return await store.create_session(replace(session, **kw))


def test_sqlite_store_satisfies_the_protocol(tmp_path: Path) -> None:
    assert isinstance(SqliteStore(tmp_path / "x.db"), Store)


# -- lifecycle and migrations ---------------------------------------------------------------


async def test_open_uses_wal_and_records_the_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "casebridge.db"
    async with SqliteStore(path) as store:
        assert await store.schema_version() == len(load_migrations())
        await store.ping()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = conn.execute("SELECT version, name FROM schema_version").fetchall()
    assert rows == [(m.version, m.name) for m in load_migrations()]


async def test_reopening_applies_nothing_and_keeps_data(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "casebridge.db"
    async with SqliteStore(path, clock=clock) as store:
        await stored_contact(store)
    with sqlite3.connect(path) as conn:
        assert apply_migrations(conn, load_migrations(), T0) == []
    async with SqliteStore(path, clock=clock) as store:
        assert (await store.get_contact("c1")) is not None
    with sqlite3.connect(path) as conn:
        count = conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0]
    assert count == len(load_migrations())


def test_a_new_migration_is_applied_once(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    first = Migration(1, "one", "CREATE TABLE a (x INTEGER);\n-- done\n")
    second = Migration(2, "two", "CREATE TABLE b (y TEXT);\nINSERT INTO b VALUES ('z');")
    assert apply_migrations(conn, [first], T0) == [1]
    assert apply_migrations(conn, [first, second], T0) == [2]
    assert apply_migrations(conn, [first, second], T0) == []
    assert conn.execute("SELECT y FROM b").fetchall() == [("z",)]


def test_a_failing_migration_leaves_no_trace(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    broken = Migration(1, "broken", "CREATE TABLE a (x INTEGER);\nINSERT INTO nowhere VALUES (1);")
    with pytest.raises(sqlite3.OperationalError, match="nowhere"):
        apply_migrations(conn, [broken], T0)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "a" not in tables
    assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 0


def test_packaged_migrations_are_numbered_from_one() -> None:
    assert [m.version for m in load_migrations()] == list(range(1, len(load_migrations()) + 1))


async def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "x.db")
    with pytest.raises(RuntimeError, match="not open"):
        await store.ping()
    await store.open()
    await store.close()
    await store.close()
    with pytest.raises(RuntimeError, match="not open"):
        await store.get_contact("c1")


# -- contacts -------------------------------------------------------------------------------


async def test_contact_round_trip(store: SqliteStore) -> None:
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


async def test_find_contact_by_any_address(store: SqliteStore) -> None:
    ann = await store.create_contact(Contact(id="c1", emails=("ann@example.com",)))
    bob = await store.create_contact(Contact(id="c2", phones=("+15550002222",)))
    assert await store.find_contact(["ann@example.com"], []) == ann
    assert await store.find_contact([], ["+15550002222"]) == bob
    assert await store.find_contact(["x@example.com"], ["+15550002222"]) == bob
    assert await store.find_contact(["ann@example.com"], ["+15550002222"]) == ann
    assert await store.find_contact(["x@example.com"], ["+19999999999"]) is None


async def test_create_contact_returns_the_owner_of_a_taken_address(store: SqliteStore) -> None:
    ann = await store.create_contact(Contact(id="c1", emails=("ann@example.com",)))
    again = await store.create_contact(
        Contact(id="c2", emails=("new@example.com", "ann@example.com"))
    )
    assert again == ann
    assert await store.get_contact("c2") is None
    assert await store.find_contact(["new@example.com"], []) is None
    assert await store.create_contact(Contact(id="c1", name="other")) == ann


async def test_create_contact_races_between_processes_yield_one_contact(
    tmp_path: Path,
) -> None:
    path = tmp_path / "casebridge.db"
    async with SqliteStore(path) as one, SqliteStore(path) as two:
        results: list[Contact] = []

        async def create(store: SqliteStore, n: int) -> None:
            contact = Contact(id=f"c{n}", emails=("same@example.com",), phones=(f"+1555000{n:04}",))
            results.append(await store.create_contact(contact))

        async with anyio.create_task_group() as tg:
            for n in range(10):
                tg.start_soon(create, one if n % 2 else two, n)
        assert len({c.id for c in results}) == 1
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT COUNT(*) FROM contacts").fetchone()[0] == 1


async def test_add_contact_addresses_appends_and_respects_other_owners(
    store: SqliteStore,
) -> None:
    await store.create_contact(Contact(id="c1", emails=("ann@example.com",)))
    await store.create_contact(Contact(id="c2", emails=("bob@example.com",)))
    got = await store.add_contact_addresses(
        "c1", ["ann@example.com", "ann@home.example", "bob@example.com"], ["+15550001111"]
    )
    assert got.emails == ("ann@example.com", "ann@home.example")
    assert got.phones == ("+15550001111",)
    assert (await store.find_contact(["bob@example.com"], [])).id == "c2"  # type: ignore[union-attr]
    with pytest.raises(RecordNotFound, match="c9"):
        await store.add_contact_addresses("c9", ["x@example.com"], [])


async def test_set_contact_crm_id(store: SqliteStore) -> None:
    await stored_contact(store)
    assert (await store.set_contact_crm_id("c1", "guid-1")).crm_id == "guid-1"
    assert (await store.get_contact("c1")).crm_id == "guid-1"  # type: ignore[union-attr]
    with pytest.raises(RecordNotFound):
        await store.set_contact_crm_id("nobody", "guid-2")


# -- sessions -------------------------------------------------------------------------------


async def test_session_round_trip_and_updates(store: SqliteStore, clock: FakeClock) -> None:
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


async def test_a_session_needs_a_stored_contact(store: SqliteStore) -> None:
    with pytest.raises(RecordNotFound, match="create_contact"):
        await stored_session(store, Contact(id="ghost"))


async def test_find_open_session(store: SqliteStore, clock: FakeClock) -> None:
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


async def test_find_session_by_external_ids(store: SqliteStore) -> None:
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


async def test_find_session_by_case(store: SqliteStore) -> None:
    contact = await stored_contact(store)
    await stored_session(store, contact, "s1")
    await store.update_session("s1", case=CaseLink(crm="creatio", case_id="case-1"))
    assert (await store.find_session_by_case("creatio", "case-1")).id == "s1"  # type: ignore[union-attr]
    assert await store.find_session_by_case("other", "case-1") is None
    assert await store.find_session_by_case("creatio", "case-2") is None


async def test_list_and_count_sessions(store: SqliteStore, clock: FakeClock) -> None:
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


async def test_message_round_trip_keeps_every_field(store: SqliteStore) -> None:
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
async def test_any_message_round_trips(store: SqliteStore, message: Message) -> None:
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


async def test_accept_inbound_stores_message_and_job_once(store: SqliteStore) -> None:
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
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
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


async def test_add_message_refuses_duplicates_by_external_id_or_id(store: SqliteStore) -> None:
    assert await store.add_message(make_message(1))
    assert not await store.add_message(make_message(1, id="other"))
    assert not await store.add_message(make_message(1, external_id="<fresh@x>"))
    assert await store.add_message(make_message(1, id="sms", channel="sms"))
    assert await store.add_message(make_message(2, external_id=""))
    assert await store.add_message(make_message(3, external_id=""))
    assert (await store.get_message("msg-3")).external_id == ""  # type: ignore[union-attr]


async def test_naive_times_are_refused(store: SqliteStore) -> None:
    with pytest.raises(ValueError, match="sent_at"):
        await store.add_message(make_message(1, sent_at=datetime(2026, 1, 1)))
    with pytest.raises(ValueError, match="active_since"):
        await store.find_open_session("email", "c1", "", datetime(2026, 1, 1))


async def test_assign_message_and_transcript_order(store: SqliteStore) -> None:
    contact = await stored_contact(store)
    await stored_session(store, contact, "s1")
    await stored_session(store, contact, "s2")
    # Arrival order, not the times the messages claim.
    for n, seconds in ((1, 50), (2, 10), (3, 30)):
        await store.accept_inbound(
            make_message(n, received_at=T0 + timedelta(seconds=seconds)), job_for(n)
        )
    assert await store.last_message_at("s1") is None
    assert await store.transcript("s1") == []
    for n in (3, 1, 2):
        got = await store.assign_message(f"msg-{n}", "s1")
        assert got.session_id == "s1"
    assert await store.assign_message("msg-1", "s1") == await store.get_message("msg-1")
    assert [m.id for m in await store.transcript("s1")] == ["msg-1", "msg-2", "msg-3"]
    assert await store.last_message_at("s1") == T0 + timedelta(seconds=50)
    with pytest.raises(ValueError, match="belongs to session 's1'"):
        await store.assign_message("msg-1", "s2")
    with pytest.raises(RecordNotFound):
        await store.assign_message("missing", "s1")
    await store.add_message(make_message(4, session_id="s1", received_at=T0 + timedelta(hours=1)))
    assert await store.last_message_at("s1") == T0 + timedelta(hours=1)
    assert [m.id for m in await store.transcript("s1")][-1] == "msg-4"


async def test_a_message_for_an_unknown_session_is_refused(store: SqliteStore) -> None:
    with pytest.raises(RecordNotFound, match="ghost"):
        await store.add_message(make_message(1, session_id="ghost"))
    assert await store.get_message("msg-1") is None


# -- dropped inbounds ---------------------------------------------------------------------


async def test_record_dropped_is_idempotent(store: SqliteStore, clock: FakeClock) -> None:
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


# -- CRM writes and events ----------------------------------------------------------------


async def test_record_intent_once_per_session_message_kind(
    store: SqliteStore, clock: FakeClock
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


async def test_claim_event_only_once(tmp_path: Path) -> None:
    path = tmp_path / "casebridge.db"
    async with SqliteStore(path) as one, SqliteStore(path) as two:
        results: list[bool] = []

        async def claim(store: SqliteStore) -> None:
            results.append(await store.claim_event("creatio", "activity-1"))

        async with anyio.create_task_group() as tg:
            for n in range(6):
                tg.start_soon(claim, one if n % 2 else two)
        assert sorted(results) == [False] * 5 + [True]
        assert await one.claim_event("other-crm", "activity-1")


# -- plugin state -------------------------------------------------------------------------


async def test_plugin_state(store: SqliteStore) -> None:
    value = {"opted_out": ["+15550001111"], "since": "2026-01-01", "n": 3, "ok": True}
    assert await store.get_state("sms", "optout") is None
    await store.put_state("sms", "optout", value)
    assert await store.get_state("sms", "optout") == value
    assert await store.get_state("email", "optout") is None
    await store.put_state("sms", "optout", [1, 2])
    assert await store.get_state("sms", "optout") == [1, 2]
    await store.delete_state("sms", "optout")
    assert await store.get_state("sms", "optout") is None
    with pytest.raises(ValueError, match="sms/bad"):
        await store.put_state("sms", "bad", {"x": object()})


async def test_compare_and_put_state(store: SqliteStore) -> None:
    assert await store.compare_and_put_state("sms", "k", None, {"v": 1, "w": 2})
    assert not await store.compare_and_put_state("sms", "k", None, {"v": 9})
    assert not await store.compare_and_put_state("sms", "k", {"v": 2}, {"v": 9})
    assert await store.compare_and_put_state("sms", "k", {"w": 2, "v": 1}, {"v": 3})
    assert await store.get_state("sms", "k") == {"v": 3}
    assert await store.compare_and_put_state("sms", "k", {"v": 3}, None)
    assert await store.get_state("sms", "k") is None


async def test_compare_and_put_counts_exactly_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "casebridge.db"
    async with SqliteStore(path) as one, SqliteStore(path) as two:

        async def bump(store: SqliteStore) -> None:
            for _ in range(10):
                while True:
                    current = await store.get_state("p", "counter")
                    new = (current or 0) + 1
                    if await store.compare_and_put_state("p", "counter", current, new):
                        break

        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(bump, one if n % 2 else two)
        assert await one.get_state("p", "counter") == 40
