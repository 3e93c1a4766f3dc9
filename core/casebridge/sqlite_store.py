"""The embedded :class:`~casebridge.store.Store`: one SQLite file in WAL mode.

One writer connection per store, used under a lock (SQLite serializes writers anyway); reads
use their own WAL connections (:mod:`casebridge.sqlite_readers`) and never wait for that
lock. A transaction runs on the event loop's thread when nothing can make it wait (the lock
free, SQLite's write lock taken without waiting), else on an anyio worker thread, which waits
and keeps the loop free; WAL checkpoints always run on a worker thread. Every write runs in
``BEGIN IMMEDIATE`` so two processes sharing the file queue on the write lock instead of
failing on a stale snapshot; ``busy_timeout`` bounds that wait. Commits use
``synchronous=NORMAL`` (durable across a process crash) except
:meth:`SqliteStore.accept_inbound`, which commits with ``FULL`` (durable across power loss)
because its caller acknowledges the inbound next; measured on the development VM, that
costs about 0.2 ms per accept (0.3 ms -> 0.5 ms).

Claims never scan the backlog: each order key's head job is marked (see
:mod:`casebridge.sqlite_jobs`), so a claim is an index probe whatever the number pending.
Inserts use ``ON CONFLICT``, and every time comes from the injected clock, never from the
database, so several processes agree as long as their clocks do.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from functools import partial
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import anyio.to_thread

from .model import (
    Attachment,
    Author,
    CaseLink,
    Contact,
    Direction,
    Message,
    Session,
    SessionStatus,
    utcnow,
)
from .sqlite_jobs import claim_row, head_flag_sql, next_due, refresh_heads
from .sqlite_readers import ReaderPool
from .store import (
    JOB_STATES,
    CrmWrite,
    CrmWriteKind,
    DroppedInbound,
    Job,
    JobState,
    NewJob,
    RecordNotFound,
)

__all__ = ["Migration", "SqliteStore", "apply_migrations", "load_migrations"]

T = TypeVar("T")
Clock = Callable[[], datetime]

MAX_ERROR_CHARS = 4000
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


# -- migrations ------------------------------------------------------------------------


class Migration:
    """One versioned schema change, read from ``casebridge/migrations/NNNN_name.sql``."""

    __slots__ = ("name", "sql", "version")

    def __init__(self, version: int, name: str, sql: str) -> None:
        self.version = version
        self.name = name
        self.sql = sql


def load_migrations() -> list[Migration]:
    """The packaged migrations in version order; raises RuntimeError on a malformed set."""
    folder = resources.files("casebridge").joinpath("migrations")
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _MIGRATION_NAME.match(entry.name)
        if match is None:
            raise RuntimeError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise RuntimeError(f"two migrations have version {version}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        raise RuntimeError(f"migration versions must run 1, 2, 3... without gaps: {versions}")
    return [found[v] for v in versions]


def _statements(script: str) -> Iterator[str]:
    """Split a script into complete statements (``executescript`` would commit early)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            buffer = ""
            if statement.strip(";").strip():
                yield statement
    if buffer.strip() and not all(
        not part.strip() or part.strip().startswith("--") for part in buffer.splitlines()
    ):
        raise RuntimeError(f"migration ends with an incomplete statement: {buffer.strip()!r}")


def apply_migrations(
    conn: sqlite3.Connection, migrations: Sequence[Migration], now: datetime
) -> list[int]:
    """Apply the migrations the database lacks, each in its own transaction, and return
    their versions. Safe against another process migrating at the same time: the version
    check happens under the write lock."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    applied: list[int] = []
    for migration in migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = conn.execute(
                "SELECT 1 FROM schema_version WHERE version = ?", (migration.version,)
            ).fetchone()
            if done is None:
                for statement in _statements(migration.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, _ts(now)),
                )
                applied.append(migration.version)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return applied


# -- value conversion ------------------------------------------------------------------


def _ts(value: datetime, what: str = "time") -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _opt_dt(text: str | None) -> datetime | None:
    return None if text is None else _dt(text)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _error_text(error: str) -> str:
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…"


def _dedupe(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _message_row(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "channel": m.channel,
        "external_id": m.external_id or None,
        "session_id": m.session_id,
        "direction": Direction(m.direction).value,
        "author": Author(m.author).value,
        "sender": m.sender,
        "recipients": _json(list(m.recipients)),
        "text": m.text,
        "original_text": m.original_text,
        "html": m.html,
        "subject": m.subject,
        "sender_name": m.sender_name,
        "attachments": _json([asdict(a) for a in m.attachments]),
        "thread_refs": _json(list(m.thread_refs)),
        "sent_at": _ts(m.sent_at, "Message.sent_at"),
        "received_at": _ts(m.received_at, "Message.received_at"),
        "trace_id": m.trace_id,
        "notes": _json(list(m.notes)),
        "meta": _json(dict(m.meta)),
    }


def _message(row: sqlite3.Row) -> Message:
    return Message(
        id=row["id"],
        channel=row["channel"],
        direction=Direction(row["direction"]),
        author=Author(row["author"]),
        external_id=row["external_id"] or "",
        sender=row["sender"],
        recipients=tuple(json.loads(row["recipients"])),
        text=row["text"],
        original_text=row["original_text"],
        html=row["html"],
        subject=row["subject"],
        sender_name=row["sender_name"],
        attachments=tuple(Attachment(**a) for a in json.loads(row["attachments"])),
        thread_refs=tuple(json.loads(row["thread_refs"])),
        sent_at=_dt(row["sent_at"]),
        received_at=_dt(row["received_at"]),
        session_id=row["session_id"],
        trace_id=row["trace_id"],
        notes=tuple(json.loads(row["notes"])),
        meta=json.loads(row["meta"]),
    )


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        payload=json.loads(row["payload"]),
        key=row["key"],
        order_key=row["order_key"],
        state=row["state"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        run_at=_dt(row["run_at"]),
        lease_until=_opt_dt(row["lease_until"]),
        worker_id=row["worker_id"],
        last_error=row["last_error"],
        trace_id=row["trace_id"],
        created_at=_dt(row["created_at"]),
        updated_at=_dt(row["updated_at"]),
    )


def _write(row: sqlite3.Row) -> CrmWrite:
    return CrmWrite(
        key=row["key"],
        session_id=row["session_id"],
        message_id=row["message_id"],
        kind=row["kind"],
        crm=row["crm"],
        crm_id=row["crm_id"],
        state=row["state"],
        attempts=row["attempts"],
        created_at=_dt(row["created_at"]),
        updated_at=_dt(row["updated_at"]),
    )


def _placeholders(values: Sequence[object]) -> str:
    return ", ".join("?" for _ in values)


# "WHERE true" keeps SQLite from reading ON CONFLICT as a join constraint of the SELECT.
_INSERT_JOB = f"""
INSERT INTO jobs (kind, key, order_key, payload, state, attempts, max_attempts, run_at,
                  trace_id, created_at, updated_at, is_head)
SELECT :kind, :key, :order_key, :payload, 'pending', 0, :max_attempts, :run_at,
       :trace_id, :now, :now, {head_flag_sql}
WHERE true
ON CONFLICT (key) DO NOTHING
"""

_INSERT_MESSAGE = """
INSERT INTO messages (id, channel, external_id, session_id, direction, author, sender,
    recipients, text, original_text, html, subject, sender_name, attachments, thread_refs,
    sent_at, received_at, trace_id, notes, meta)
VALUES (:id, :channel, :external_id, :session_id, :direction, :author, :sender,
    :recipients, :text, :original_text, :html, :subject, :sender_name, :attachments,
    :thread_refs, :sent_at, :received_at, :trace_id, :notes, :meta)
ON CONFLICT DO NOTHING
"""


# Commits between two WAL checkpoints (run on a worker thread, see SqliteStore._run).
CHECKPOINT_EVERY = 250


class SqliteStore:
    """A :class:`~casebridge.store.Store` in one SQLite file.

    ``clock`` gives every time the store writes and compares (leases, due jobs); inject one
    in tests. ``busy_timeout`` (seconds) bounds the wait for another process's write lock.
    ``durable_accept`` commits :meth:`accept_inbound` with ``synchronous=FULL``.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Clock = utcnow,
        busy_timeout: float = 30.0,
        durable_accept: bool = True,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._durable_accept = durable_accept
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._readers: ReaderPool | None = None
        self._commits = 0  # since the last checkpoint

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        self._conn = await anyio.to_thread.run_sync(self._open_sync)
        self._readers = ReaderPool(self.path, self._busy_timeout)

    def _open_sync(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.row_factory = sqlite3.Row
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RuntimeError(f"{self.path}: SQLite refused WAL mode (got {mode!r})")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            apply_migrations(conn, load_migrations(), self._now())
            # From here on a write tries the lock without waiting (see _in_tx_now); only the
            # worker-thread path (_in_tx) waits, up to busy_timeout.
            conn.execute("PRAGMA busy_timeout = 0")
            # No checkpoint inside a commit: that one writes the WAL back and syncs the file,
            # which on the event loop's thread stalls every worker (measured: handoffs/s
            # halved, at random, on a busy disk). _run checkpoints on a worker thread instead.
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException:
            conn.close()
            raise
        return conn

    async def close(self) -> None:
        readers, self._readers = self._readers, None
        if readers is not None:
            await anyio.to_thread.run_sync(readers.close)
        conn, self._conn = self._conn, None
        if conn is not None:
            await anyio.to_thread.run_sync(self._close_sync, conn)

    def _close_sync(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            conn.close()

    async def __aenter__(self) -> SqliteStore:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def ping(self) -> None:
        await self._read(lambda c: c.execute("SELECT 1").fetchone())

    async def schema_version(self) -> int:
        """The highest migration applied."""
        sql = "SELECT COALESCE(MAX(version), 0) FROM schema_version"
        return await self._read(lambda conn: int(conn.execute(sql).fetchone()[0]))

    # -- plumbing ----------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the store's clock must return timezone-aware datetimes")
        return now

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError(f"{self!r} is not open: call open() or use 'async with'")
        return self._conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        # Reads go to their own WAL connections: they never wait for the writer's lock.
        readers = self._readers
        if readers is None:
            raise RuntimeError(f"{self!r} is not open: call open() or use 'async with'")
        # A WAL read takes no lock to wait for: run it here, as writes do (see _run), when a
        # reader connection is free.
        ran, result = readers.try_run(fn)
        if ran:
            return result  # type: ignore[return-value]
        return await anyio.to_thread.run_sync(readers.run, fn)

    async def _tx(self, fn: Callable[[sqlite3.Connection], T], *, full_sync: bool = False) -> T:
        return await self._run(fn, "BEGIN IMMEDIATE", full_sync=full_sync)

    async def _run(
        self, fn: Callable[[sqlite3.Connection], T], begin: str, *, full_sync: bool
    ) -> T:
        conn = self._connection()
        if not full_sync and self._lock.acquire(blocking=False):
            # Nothing can make this transaction wait (this lock is free, and SQLite's write
            # lock is tried without waiting): run it here on the event loop's thread. A
            # transaction is shorter than the hop to a worker thread (about 60 us of CPU,
            # measured), and a handoff makes some 3N+12 of them. A FULL sync (an fsync) and
            # anything that would wait still go to a worker thread.
            try:
                ran, result = self._in_tx_now(conn, fn, begin)
            finally:
                self._lock.release()
            if ran:
                await self._count_commit(conn)
                return result  # type: ignore[return-value]
        result = await anyio.to_thread.run_sync(
            partial(self._in_tx, conn, fn, begin, full_sync))
        await self._count_commit(conn)
        return result

    async def _count_commit(self, conn: sqlite3.Connection) -> None:
        # SQLite's own rule is a checkpoint once the WAL holds 1,000 pages; a few pages a
        # commit makes every CHECKPOINT_EVERY commits about that.
        self._commits += 1
        if self._commits >= CHECKPOINT_EVERY:
            self._commits = 0
            await anyio.to_thread.run_sync(self._checkpoint, conn)

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _in_tx_now(
        self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], begin: str
    ) -> tuple[bool, T | None]:
        """``fn`` in a transaction if SQLite's write lock is free now: (True, its result);
        (False, None) without running it when another connection holds the lock. The
        caller holds ``self._lock``."""
        try:
            conn.execute(begin)  # the connection's busy_timeout is 0: this never waits
        except sqlite3.OperationalError:
            return False, None  # SQLITE_BUSY: another process is writing
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return True, result

    def _in_tx(
        self,
        conn: sqlite3.Connection,
        fn: Callable[[sqlite3.Connection], T],
        begin: str,
        full_sync: bool,
    ) -> T:
        with self._lock:
            if full_sync:
                conn.execute("PRAGMA synchronous = FULL")
            try:
                # Here, on a worker thread, the write lock may be waited for.
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
                try:
                    conn.execute(begin)
                finally:
                    conn.execute("PRAGMA busy_timeout = 0")
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                return result
            finally:
                if full_sync:
                    conn.execute("PRAGMA synchronous = NORMAL")

    # -- contacts ----------------------------------------------------------------------

    @staticmethod
    def _contact(conn: sqlite3.Connection, contact_id: str) -> Contact | None:
        row = conn.execute("SELECT * FROM contacts WHERE id = ?", (contact_id,)).fetchone()
        if row is None:
            return None
        addresses = conn.execute(
            "SELECT kind, address FROM contact_addresses WHERE contact_id = ?"
            " ORDER BY kind, position",
            (contact_id,),
        ).fetchall()
        return Contact(
            id=row["id"],
            name=row["name"],
            emails=tuple(a["address"] for a in addresses if a["kind"] == "email"),
            phones=tuple(a["address"] for a in addresses if a["kind"] == "phone"),
            crm_id=row["crm_id"],
        )

    def _existing_contact(self, conn: sqlite3.Connection, contact_id: str) -> Contact:
        contact = self._contact(conn, contact_id)
        if contact is None:
            raise RecordNotFound(f"no contact with id {contact_id!r}")
        return contact

    @staticmethod
    def _owner(conn: sqlite3.Connection, emails: Sequence[str], phones: Sequence[str]) -> str:
        for kind, addresses in (("email", emails), ("phone", phones)):
            for address in addresses:
                row = conn.execute(
                    "SELECT contact_id FROM contact_addresses WHERE kind = ? AND address = ?",
                    (kind, address),
                ).fetchone()
                if row is not None:
                    return str(row[0])
        return ""

    @staticmethod
    def _add_addresses(
        conn: sqlite3.Connection, contact_id: str, kind: str, addresses: Sequence[str]
    ) -> None:
        position = conn.execute(
            "SELECT COALESCE(MAX(position), -1) FROM contact_addresses"
            " WHERE contact_id = ? AND kind = ?",
            (contact_id, kind),
        ).fetchone()[0]
        for address in _dedupe(addresses):
            position += 1
            conn.execute(
                "INSERT INTO contact_addresses (kind, address, contact_id, position)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (kind, address) DO NOTHING",
                (kind, address, contact_id, position),
            )

    async def find_contact(self, emails: Sequence[str], phones: Sequence[str]) -> Contact | None:
        def run(conn: sqlite3.Connection) -> Contact | None:
            owner = self._owner(conn, emails, phones)
            return self._contact(conn, owner) if owner else None

        return await self._read(run)

    async def create_contact(self, contact: Contact) -> Contact:
        if not contact.id:
            raise ValueError("Contact.id must not be empty")

        def run(conn: sqlite3.Connection) -> Contact:
            existing = self._contact(conn, contact.id)
            if existing is not None:
                return existing
            owner = self._owner(conn, contact.emails, contact.phones)
            if owner:
                return self._existing_contact(conn, owner)
            now = _ts(self._now())
            conn.execute(
                "INSERT INTO contacts (id, name, crm_id, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (contact.id, contact.name, contact.crm_id, now, now),
            )
            self._add_addresses(conn, contact.id, "email", contact.emails)
            self._add_addresses(conn, contact.id, "phone", contact.phones)
            return self._existing_contact(conn, contact.id)

        return await self._tx(run)

    async def add_contact_addresses(
        self, contact_id: str, emails: Sequence[str], phones: Sequence[str]
    ) -> Contact:
        def run(conn: sqlite3.Connection) -> Contact:
            self._existing_contact(conn, contact_id)
            self._add_addresses(conn, contact_id, "email", emails)
            self._add_addresses(conn, contact_id, "phone", phones)
            conn.execute(
                "UPDATE contacts SET updated_at = ? WHERE id = ?", (_ts(self._now()), contact_id)
            )
            return self._existing_contact(conn, contact_id)

        return await self._tx(run)

    async def set_contact_crm_id(self, contact_id: str, crm_id: str) -> Contact:
        def run(conn: sqlite3.Connection) -> Contact:
            conn.execute(
                "UPDATE contacts SET crm_id = ?, updated_at = ? WHERE id = ?",
                (crm_id, _ts(self._now()), contact_id),
            )
            return self._existing_contact(conn, contact_id)

        return await self._tx(run)

    async def get_contact(self, contact_id: str) -> Contact | None:
        return await self._read(lambda conn: self._contact(conn, contact_id))

    # -- sessions ----------------------------------------------------------------------

    def _session(self, conn: sqlite3.Connection, row: sqlite3.Row) -> Session:
        case = None
        if row["case_crm"] is not None:
            case = CaseLink(
                crm=row["case_crm"],
                case_id=row["case_id"],
                number=row["case_number"],
                url=row["case_url"],
            )
        return Session(
            id=row["id"],
            channel=row["channel"],
            contact=self._existing_contact(conn, row["contact_id"]),
            status=SessionStatus(row["status"]),
            channel_address=row["channel_address"],
            subject=row["subject"],
            case=case,
            created_at=_dt(row["created_at"]),
            updated_at=_dt(row["updated_at"]),
        )

    def _session_by_id(self, conn: sqlite3.Connection, session_id: str) -> Session | None:
        row = conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return None if row is None else self._session(conn, row)

    def _first_session(
        self, conn: sqlite3.Connection, sql: str, params: Sequence[object]
    ) -> Session | None:
        row = conn.execute(sql, params).fetchone()
        return None if row is None else self._session(conn, row)

    async def create_session(self, session: Session) -> Session:
        if not session.id:
            raise ValueError("Session.id must not be empty")
        case = session.case

        def run(conn: sqlite3.Connection) -> Session:
            if self._contact(conn, session.contact.id) is None:
                raise RecordNotFound(
                    f"session {session.id!r} names contact {session.contact.id!r},"
                    " which is not stored: create_contact first"
                )
            conn.execute(
                "INSERT INTO sessions (id, channel, contact_id, status, channel_address, subject,"
                " case_crm, case_id, case_number, case_url, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (
                    session.id,
                    session.channel,
                    session.contact.id,
                    SessionStatus(session.status).value,
                    session.channel_address,
                    session.subject,
                    case.crm if case else None,
                    case.case_id if case else None,
                    case.number if case else "",
                    case.url if case else "",
                    _ts(session.created_at, "Session.created_at"),
                    _ts(session.updated_at, "Session.updated_at"),
                ),
            )
            stored = self._session_by_id(conn, session.id)
            assert stored is not None
            return stored

        return await self._tx(run)

    async def get_session(self, session_id: str) -> Session | None:
        return await self._read(lambda conn: self._session_by_id(conn, session_id))

    async def update_session(
        self,
        session_id: str,
        *,
        status: SessionStatus | None = None,
        case: CaseLink | None = None,
        subject: str | None = None,
    ) -> Session:
        sets = ["updated_at = :now"]
        params: dict[str, object] = {"id": session_id}
        if status is not None:
            sets.append("status = :status")
            params["status"] = SessionStatus(status).value
        if case is not None:
            sets.append(
                "case_crm = :crm, case_id = :case_id, case_number = :number, case_url = :url"
            )
            params.update(crm=case.crm, case_id=case.case_id, number=case.number, url=case.url)
        if subject is not None:
            sets.append("subject = :subject")
            params["subject"] = subject
        sql = f"UPDATE sessions SET {', '.join(sets)} WHERE id = :id"  # noqa: S608

        def run(conn: sqlite3.Connection) -> Session:
            params["now"] = _ts(self._now())
            if conn.execute(sql, params).rowcount == 0:
                raise RecordNotFound(f"no session with id {session_id!r}")
            stored = self._session_by_id(conn, session_id)
            assert stored is not None
            return stored

        return await self._tx(run)

    async def find_open_session(
        self, channel: str, contact_id: str, channel_address: str, active_since: datetime
    ) -> Session | None:
        since = _ts(active_since, "active_since")
        return await self._read(
            lambda conn: self._first_session(
                conn,
                "SELECT * FROM sessions WHERE contact_id = ? AND channel = ?"
                " AND channel_address = ? AND status <> 'closed'"
                " AND COALESCE(last_message_at, created_at) > ?"
                " ORDER BY COALESCE(last_message_at, created_at) DESC, created_at DESC LIMIT 1",
                (contact_id, channel, channel_address, since),
            )
        )

    async def find_session_by_external_ids(
        self, channel: str, external_ids: Sequence[str]
    ) -> Session | None:
        ids = _dedupe(external_ids)
        if not ids:
            return None

        def run(conn: sqlite3.Connection) -> Session | None:
            best: tuple[int, str] | None = None
            # Chunked to stay under SQLite's bound-parameter limit on long References.
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                sql = (
                    "SELECT seq, session_id FROM messages WHERE channel = ? AND session_id <> ''"  # noqa: S608
                    f" AND external_id IN ({_placeholders(chunk)}) ORDER BY seq DESC LIMIT 1"
                )
                row = conn.execute(sql, (channel, *chunk)).fetchone()
                if row is not None and (best is None or row[0] > best[0]):
                    best = (row[0], row[1])
            return None if best is None else self._session_by_id(conn, best[1])

        return await self._read(run)

    async def find_session_by_case(self, crm: str, case_id: str) -> Session | None:
        sessions = await self.sessions_by_case(crm, case_id)
        return sessions[0] if sessions else None

    async def sessions_by_case(self, crm: str, case_id: str) -> list[Session]:
        def run(conn: sqlite3.Connection) -> list[Session]:
            rows = conn.execute(
                "SELECT * FROM sessions WHERE case_crm = ? AND case_id = ?"
                " ORDER BY created_at DESC, id DESC",
                (crm, case_id),
            ).fetchall()
            return [self._session(conn, row) for row in rows]

        return await self._read(run)

    async def list_sessions(
        self, *, status: SessionStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[Session]:
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, got {limit} and {offset}")
        where, params = ("WHERE status = ?", [SessionStatus(status).value]) if status else ("", [])

        def run(conn: sqlite3.Connection) -> list[Session]:
            rows = conn.execute(
                f"SELECT * FROM sessions {where}"  # noqa: S608
                " ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
            return [self._session(conn, row) for row in rows]

        return await self._read(run)

    async def count_sessions(self, status: SessionStatus | None = None) -> int:
        if status is None:
            sql, params = "SELECT COUNT(*) FROM sessions", ()
        else:
            sql, params = "SELECT COUNT(*) FROM sessions WHERE status = ?", (status.value,)
        return await self._read(lambda conn: int(conn.execute(sql, params).fetchone()[0]))

    async def session_ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        # A range on the primary key, not LIKE: no wildcards to escape, and the index is used.
        sql = "SELECT id FROM sessions WHERE id >= ? AND id < ? ORDER BY id LIMIT ?"
        params = (prefix, prefix + "\U0010ffff", limit)
        return await self._read(lambda conn: [row[0] for row in conn.execute(sql, params)])

    # -- messages ----------------------------------------------------------------------

    def _insert_message(self, conn: sqlite3.Connection, row: dict[str, Any], now: str) -> bool:
        if conn.execute(_INSERT_MESSAGE, row).rowcount == 0:
            return False
        if row["session_id"]:
            self._touch_session(conn, row["session_id"], row["received_at"], now)
        return True

    @staticmethod
    def _touch_session(conn: sqlite3.Connection, session_id: str, at: str, now: str) -> None:
        changed = conn.execute(
            "UPDATE sessions SET last_message_at = MAX(COALESCE(last_message_at, ''), ?),"
            " updated_at = ? WHERE id = ?",
            (at, now, session_id),
        ).rowcount
        if changed == 0:
            raise RecordNotFound(f"no session with id {session_id!r}")

    async def accept_inbound(self, message: Message, job: NewJob) -> bool:
        row = _message_row(message)

        def run(conn: sqlite3.Connection) -> bool:
            now = self._now()
            if not self._insert_message(conn, row, _ts(now)):
                return False
            self._insert_jobs(conn, [job], now)
            return True

        return await self._tx(run, full_sync=self._durable_accept)

    async def add_message(self, message: Message) -> bool:
        row = _message_row(message)
        return await self._tx(lambda conn: self._insert_message(conn, row, _ts(self._now())))

    async def get_message(self, message_id: str) -> Message | None:
        def run(conn: sqlite3.Connection) -> Message | None:
            row = conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
            return None if row is None else _message(row)

        return await self._read(run)

    async def assign_message(self, message_id: str, session_id: str) -> Message:
        if not session_id:
            raise ValueError(f"assign_message({message_id!r}): session_id must not be empty")

        def run(conn: sqlite3.Connection) -> Message:
            row = conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise RecordNotFound(f"no message with id {message_id!r}")
            current = row["session_id"]
            if current == session_id:
                return _message(row)
            if current:
                raise ValueError(
                    f"message {message_id!r} belongs to session {current!r}, not {session_id!r}"
                )
            conn.execute(
                "UPDATE messages SET session_id = ? WHERE id = ?", (session_id, message_id)
            )
            self._touch_session(conn, session_id, row["received_at"], _ts(self._now()))
            updated = conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
            return _message(updated)

        return await self._tx(run)

    async def transcript(self, session_id: str) -> list[Message]:
        def run(conn: sqlite3.Connection) -> list[Message]:
            rows = conn.execute(
                "SELECT * FROM messages WHERE session_id = ? ORDER BY seq", (session_id,)
            ).fetchall()
            return [_message(row) for row in rows]

        if not session_id:
            return []
        return await self._read(run)

    async def last_message_at(self, session_id: str) -> datetime | None:
        def run(conn: sqlite3.Connection) -> datetime | None:
            row = conn.execute(
                "SELECT last_message_at FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
            return None if row is None else _opt_dt(row[0])

        return await self._read(run)

    # -- dropped inbounds --------------------------------------------------------------

    async def record_dropped(
        self, channel: str, external_id: str, sender: str, reason: str, received_at: datetime
    ) -> None:
        received = _ts(received_at, "received_at")

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO dropped_inbounds (channel, external_id, sender, reason, received_at,"
                " recorded_at) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (channel, external_id) DO NOTHING",
                (channel, external_id, sender, reason, received, _ts(self._now())),
            )

        await self._tx(run)

    async def list_dropped(self, limit: int = 100) -> list[DroppedInbound]:
        def run(conn: sqlite3.Connection) -> list[DroppedInbound]:
            rows = conn.execute(
                "SELECT * FROM dropped_inbounds ORDER BY seq DESC LIMIT ?", (limit,)
            ).fetchall()
            return [
                DroppedInbound(
                    channel=r["channel"],
                    external_id=r["external_id"],
                    sender=r["sender"],
                    reason=r["reason"],
                    received_at=_dt(r["received_at"]),
                    recorded_at=_dt(r["recorded_at"]),
                )
                for r in rows
            ]

        return await self._read(run)

    # -- CRM writes and events ---------------------------------------------------------

    async def record_intent(
        self, session_id: str, message_id: str, kind: CrmWriteKind, crm: str, key: str
    ) -> CrmWrite:
        if kind not in ("case", "activity", "attachment"):
            raise ValueError(f"CRM write kind must be case, activity or attachment, not {kind!r}")
        if not key or not session_id or not crm:
            raise ValueError("record_intent needs a key, a session_id and a crm")

        def run(conn: sqlite3.Connection) -> CrmWrite:
            now = _ts(self._now())
            try:
                conn.execute(
                    "INSERT INTO crm_writes (key, session_id, message_id, kind, crm, created_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (session_id, message_id, kind) DO UPDATE"
                    " SET attempts = attempts + 1, updated_at = excluded.updated_at"
                    " WHERE crm_writes.state = 'intent'",
                    (key, session_id, message_id, kind, crm, now, now),
                )
            except sqlite3.IntegrityError:
                raise ValueError(
                    f"CRM write key {key!r} is already used for another (session, message, kind)"
                ) from None
            row = conn.execute(
                "SELECT * FROM crm_writes WHERE session_id = ? AND message_id = ? AND kind = ?",
                (session_id, message_id, kind),
            ).fetchone()
            return _write(row)

        return await self._tx(run)

    async def record_written(self, key: str, crm_id: str) -> None:
        if not crm_id:
            raise ValueError(f"record_written({key!r}): crm_id must not be empty")

        def run(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT * FROM crm_writes WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise RecordNotFound(f"no CRM write intent with key {key!r}")
            if row["state"] == "written":
                if row["crm_id"] != crm_id:
                    raise ValueError(
                        f"CRM write {key!r} was recorded as {row['crm_id']!r};"
                        f" refusing to record a second CRM id {crm_id!r}"
                    )
                return
            conn.execute(
                "UPDATE crm_writes SET state = 'written', crm_id = ?, updated_at = ? WHERE key = ?",
                (crm_id, _ts(self._now()), key),
            )

        await self._tx(run)

    async def get_write(self, key: str) -> CrmWrite | None:
        def run(conn: sqlite3.Connection) -> CrmWrite | None:
            row = conn.execute("SELECT * FROM crm_writes WHERE key = ?", (key,)).fetchone()
            return None if row is None else _write(row)

        return await self._read(run)

    async def claim_event(self, crm: str, event_id: str) -> bool:
        if not event_id:
            raise ValueError(f"claim_event({crm!r}): event_id must not be empty")
        return await self._tx(
            lambda conn: (
                conn.execute(
                    "INSERT INTO crm_events (crm, event_id, claimed_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (crm, event_id) DO NOTHING",
                    (crm, event_id, _ts(self._now())),
                ).rowcount
                == 1
            )
        )

    # -- plugin state ------------------------------------------------------------------

    @staticmethod
    def _state_json(plugin: str, key: str, value: Any) -> str:
        try:
            return _json(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"state {plugin}/{key} is not JSON-serializable: {exc}") from None

    async def put_state(self, plugin: str, key: str, value: Any) -> None:
        text = self._state_json(plugin, key, value)
        await self._tx(
            lambda conn: conn.execute(
                "INSERT INTO plugin_state (plugin, key, value, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (plugin, key) DO UPDATE"
                " SET value = excluded.value, updated_at = excluded.updated_at",
                (plugin, key, text, _ts(self._now())),
            )
        )

    async def get_state(self, plugin: str, key: str) -> Any | None:
        def run(conn: sqlite3.Connection) -> Any | None:
            row = conn.execute(
                "SELECT value FROM plugin_state WHERE plugin = ? AND key = ?", (plugin, key)
            ).fetchone()
            return None if row is None else json.loads(row[0])

        return await self._read(run)

    async def delete_state(self, plugin: str, key: str) -> None:
        await self._tx(
            lambda conn: conn.execute(
                "DELETE FROM plugin_state WHERE plugin = ? AND key = ?", (plugin, key)
            )
        )

    async def compare_and_put_state(
        self, plugin: str, key: str, expected: Any | None, value: Any | None
    ) -> bool:
        want = None if expected is None else self._state_json(plugin, key, expected)
        new = None if value is None else self._state_json(plugin, key, value)

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT value FROM plugin_state WHERE plugin = ? AND key = ?", (plugin, key)
            ).fetchone()
            current = None if row is None else _json(json.loads(row[0]))
            if current != want:
                return False
            if new is None:
                conn.execute("DELETE FROM plugin_state WHERE plugin = ? AND key = ?", (plugin, key))
            else:
                conn.execute(
                    "INSERT INTO plugin_state (plugin, key, value, updated_at) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (plugin, key) DO UPDATE"
                    " SET value = excluded.value, updated_at = excluded.updated_at",
                    (plugin, key, new, _ts(self._now())),
                )
            return True

        return await self._tx(run)

    # -- jobs --------------------------------------------------------------------------

    @staticmethod
    def _insert_jobs(conn: sqlite3.Connection, jobs: Sequence[NewJob], now: datetime) -> None:
        stamp = _ts(now)
        conn.executemany(
            _INSERT_JOB,
            [
                {
                    "kind": job.kind,
                    "key": job.key,
                    "order_key": job.order_key,
                    "payload": _json(dict(job.payload)),
                    "max_attempts": job.max_attempts,
                    "run_at": _ts(job.run_at, "NewJob.run_at") if job.run_at else stamp,
                    "trace_id": job.trace_id,
                    "now": stamp,
                }
                for job in jobs
            ],
        )

    async def enqueue(self, jobs: Sequence[NewJob]) -> None:
        if not jobs:
            return
        await self._tx(lambda conn: self._insert_jobs(conn, jobs, self._now()))

    async def claim_job(
        self, worker_id: str, lease: timedelta, kinds: Sequence[str] | None = None
    ) -> Job | None:
        if lease <= timedelta(0):
            raise ValueError(f"lease must be positive, got {lease}")
        if kinds is not None and not kinds:
            return None
        names = None if kinds is None else list(dict.fromkeys(kinds))

        def run(conn: sqlite3.Connection) -> Job | None:
            now = self._now()
            row = claim_row(conn, worker_id, _ts(now), _ts(now + lease), names)
            return None if row is None else _job(row)

        return await self._tx(run)

    async def renew_lease(self, job_id: int, attempt: int, lease: timedelta) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            now = self._now()
            return (
                conn.execute(
                    "UPDATE jobs SET lease_until = ?, updated_at = ?"
                    " WHERE id = ? AND state = 'running' AND attempts = ?",
                    (_ts(now + lease), _ts(now), job_id, attempt),
                ).rowcount
                == 1
            )

        return await self._tx(run)

    def _finish(
        self,
        conn: sqlite3.Connection,
        job_id: int,
        attempt: int | None,
        sets: str,
        params: Sequence[object],
    ) -> bool:
        if attempt is None:
            fence, fence_params = "state IN ('pending', 'running')", ()
        else:
            fence, fence_params = "state = 'running' AND attempts = ?", (attempt,)
        changed = conn.execute(
            f"UPDATE jobs SET {sets}, lease_until = NULL, updated_at = ?"  # noqa: S608
            f" WHERE id = ? AND {fence} RETURNING order_key",
            (*params, _ts(self._now()), job_id, *fence_params),
        ).fetchone()
        if changed is None:
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
                raise RecordNotFound(f"no job with id {job_id}")
            return False
        # The job left (or went back to) pending: its order key may have a new head.
        refresh_heads(conn, [changed[0]])
        return True

    async def complete_job(
        self, job_id: int, follow_ups: Sequence[NewJob] = (), *, attempt: int | None = None
    ) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            if not self._finish(conn, job_id, attempt, "state = 'done'", ()):
                return False
            if follow_ups:
                self._insert_jobs(conn, follow_ups, self._now())
            return True

        return await self._tx(run)

    async def retry_job(
        self, job_id: int, run_at: datetime, error: str, *, attempt: int | None = None
    ) -> bool:
        due = _ts(run_at, "run_at")
        return await self._tx(
            lambda conn: self._finish(
                conn,
                job_id,
                attempt,
                "state = 'pending', run_at = ?, last_error = ?, worker_id = ''",
                (due, _error_text(error)),
            )
        )

    async def kill_job(self, job_id: int, error: str, *, attempt: int | None = None) -> bool:
        return await self._tx(
            lambda conn: self._finish(
                conn, job_id, attempt, "state = 'dead', last_error = ?", (_error_text(error),)
            )
        )

    async def get_job(self, job_id: int) -> Job | None:
        def run(conn: sqlite3.Connection) -> Job | None:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return None if row is None else _job(row)

        return await self._read(run)

    async def list_jobs(self, state: JobState | None = None, limit: int = 100) -> list[Job]:
        if state is not None and state not in JOB_STATES:
            raise ValueError(f"job state must be one of {', '.join(JOB_STATES)}, not {state!r}")
        where, params = ("WHERE state = ?", (state,)) if state else ("", ())

        def run(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(
                f"SELECT * FROM jobs {where} ORDER BY id DESC LIMIT ?",  # noqa: S608
                (*params, limit),
            ).fetchall()
            return [_job(row) for row in rows]

        return await self._read(run)

    async def replay_dead(self, job_ids: Sequence[int] | None = None) -> int:
        def run(conn: sqlite3.Connection) -> int:
            now = _ts(self._now())
            sql = (
                "UPDATE jobs SET state = 'pending', attempts = 0, run_at = ?, lease_until = NULL,"
                " worker_id = '', updated_at = ? WHERE state = 'dead'"
            )
            keys: list[str] = []
            if job_ids is None:
                keys = [r[0] for r in conn.execute(f"{sql} RETURNING order_key", (now, now))]
            else:
                ids = list(dict.fromkeys(job_ids))
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    keys += [r[0] for r in conn.execute(
                        f"{sql} AND id IN ({_placeholders(chunk)}) RETURNING order_key",
                        (now, now, *chunk),
                    )]
            # A replayed job may come before its key's current head (or have none).
            refresh_heads(conn, keys)
            return len(keys)

        return await self._tx(run)

    async def job_counts(self) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            counts: dict[str, int] = dict.fromkeys(JOB_STATES, 0)
            for state, count in conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
                counts[state] = count
            return counts

        return await self._read(run)

    async def next_run_at(self, kinds: Sequence[str] | None = None) -> datetime | None:
        if kinds is not None and not kinds:
            return None
        names = None if kinds is None else list(dict.fromkeys(kinds))
        return await self._read(lambda conn: _opt_dt(next_due(conn, names)))
