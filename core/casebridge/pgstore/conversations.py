"""Contacts, sessions, messages and dropped inbounds on PostgreSQL (the conversation part
of the store; the same guarantees as the SQLite store, see :mod:`casebridge.store`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from ..model import CaseLink, Contact, Message, Session, SessionStatus
from ..store.records import DroppedInbound, NewJob, RecordNotFound
from ..store.rows import POSTGRES as rows
from ..store.rows import dedupe
from .db import Conn, Database

_INSERT_MESSAGE = """
INSERT INTO messages (id, channel, external_id, session_id, direction, author, sender,
    recipients, text, original_text, html, subject, sender_name, attachments, thread_refs,
    sent_at, received_at, trace_id, notes, meta)
VALUES (%(id)s, %(channel)s, %(external_id)s, %(session_id)s, %(direction)s, %(author)s,
    %(sender)s, %(recipients)s, %(text)s, %(original_text)s, %(html)s, %(subject)s,
    %(sender_name)s, %(attachments)s, %(thread_refs)s, %(sent_at)s, %(received_at)s,
    %(trace_id)s, %(notes)s, %(meta)s)
ON CONFLICT DO NOTHING
"""


async def _fetchone(conn: Conn, sql: str, params: Any = ()) -> dict[str, Any] | None:
    cur = await conn.execute(sql, params)
    return await cur.fetchone()


class Conversations:
    """The conversation store: who wrote, in which session, and what."""

    db: Database
    # The job queue's insert (JobQueue, composed beside this in PgStore): accept_inbound
    # stores the message and its job in one transaction.
    _insert_jobs_in: Callable[[Conn, Sequence[NewJob]], Awaitable[None]]

    # -- contacts ----------------------------------------------------------------------

    @staticmethod
    async def _contact(conn: Conn, contact_id: str) -> Contact | None:
        row = await _fetchone(conn, "SELECT * FROM contacts WHERE id = %s", (contact_id,))
        if row is None:
            return None
        cur = await conn.execute(
            "SELECT kind, address FROM contact_addresses WHERE contact_id = %s"
            " ORDER BY kind, position", (contact_id,))
        addresses = await cur.fetchall()
        return Contact(
            id=row["id"],
            name=row["name"],
            emails=tuple(a["address"] for a in addresses if a["kind"] == "email"),
            phones=tuple(a["address"] for a in addresses if a["kind"] == "phone"),
            crm_id=row["crm_id"],
        )

    async def _existing_contact(self, conn: Conn, contact_id: str) -> Contact:
        contact = await self._contact(conn, contact_id)
        if contact is None:
            raise RecordNotFound(f"no contact with id {contact_id!r}")
        return contact

    @staticmethod
    async def _owner(conn: Conn, emails: Sequence[str], phones: Sequence[str]) -> str:
        for kind, addresses in (("email", emails), ("phone", phones)):
            for address in addresses:
                row = await _fetchone(
                    conn, "SELECT contact_id FROM contact_addresses"
                    " WHERE kind = %s AND address = %s", (kind, address))
                if row is not None:
                    return str(row["contact_id"])
        return ""

    @staticmethod
    async def _add_addresses(
        conn: Conn, contact_id: str, kind: str, addresses: Sequence[str]
    ) -> None:
        row = await _fetchone(
            conn, "SELECT COALESCE(MAX(position), -1) AS p FROM contact_addresses"
            " WHERE contact_id = %s AND kind = %s", (contact_id, kind))
        position = row["p"] if row else -1
        for address in dedupe(addresses):
            position += 1
            await conn.execute(
                "INSERT INTO contact_addresses (kind, address, contact_id, position)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (kind, address) DO NOTHING",
                (kind, address, contact_id, position))

    async def find_contact(self, emails: Sequence[str], phones: Sequence[str]) -> Contact | None:
        async with self.db.conn() as conn:
            owner = await self._owner(conn, emails, phones)
            return await self._contact(conn, owner) if owner else None

    async def create_contact(self, contact: Contact) -> Contact:
        if not contact.id:
            raise ValueError("Contact.id must not be empty")
        async with self.db.tx() as conn:
            # Serializes creators of the same addresses: two racing creates yield one contact.
            for address in sorted({*contact.emails, *contact.phones}):
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))",
                                   (address,))
            existing = await self._contact(conn, contact.id)
            if existing is not None:
                return existing
            owner = await self._owner(conn, contact.emails, contact.phones)
            if owner:
                return await self._existing_contact(conn, owner)
            now = self.db.now()
            inserted = await conn.execute(
                "INSERT INTO contacts (id, name, crm_id, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                (contact.id, contact.name, contact.crm_id, now, now))
            if inserted.rowcount == 1:
                await self._add_addresses(conn, contact.id, "email", contact.emails)
                await self._add_addresses(conn, contact.id, "phone", contact.phones)
            return await self._existing_contact(conn, contact.id)

    async def set_contact_crm_id(self, contact_id: str, crm_id: str) -> Contact:
        async with self.db.tx() as conn:
            await conn.execute("UPDATE contacts SET crm_id = %s, updated_at = %s WHERE id = %s",
                               (crm_id, self.db.now(), contact_id))
            return await self._existing_contact(conn, contact_id)

    async def get_contact(self, contact_id: str) -> Contact | None:
        async with self.db.conn() as conn:
            return await self._contact(conn, contact_id)

    # -- sessions ----------------------------------------------------------------------

    async def _session(self, conn: Conn, row: dict[str, Any]) -> Session:
        return rows.session(row, await self._existing_contact(conn, row["contact_id"]))

    async def _sessions(self, conn: Conn, sql: str, params: Any) -> list[Session]:
        cur = await conn.execute(sql, params)
        return [await self._session(conn, row) for row in await cur.fetchall()]

    async def _session_by_id(self, conn: Conn, session_id: str) -> Session | None:
        found = await self._sessions(conn, "SELECT * FROM sessions WHERE id = %s", (session_id,))
        return found[0] if found else None

    async def create_session(self, session: Session, *, first_message: str = "") -> Session:
        if not session.id:
            raise ValueError("Session.id must not be empty")
        case = session.case
        async with self.db.tx() as conn:
            if await self._contact(conn, session.contact.id) is None:
                raise RecordNotFound(
                    f"session {session.id!r} names contact {session.contact.id!r},"
                    " which is not stored: create_contact first")
            await conn.execute(
                "INSERT INTO sessions (id, channel, contact_id, status, channel_address, subject,"
                " case_crm, case_id, case_number, case_url, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO NOTHING",
                (session.id, session.channel, session.contact.id,
                 SessionStatus(session.status).value, session.channel_address, session.subject,
                 case.crm if case else None, case.case_id if case else None,
                 case.number if case else "", case.url if case else "",
                 rows.ts(session.created_at, "Session.created_at"),
                 rows.ts(session.updated_at, "Session.updated_at")))
            if first_message:
                await self._assign(conn, first_message, session.id)
            stored = await self._session_by_id(conn, session.id)
            assert stored is not None
            return stored

    async def get_session(self, session_id: str) -> Session | None:
        async with self.db.conn() as conn:
            return await self._session_by_id(conn, session_id)

    async def update_session(
        self,
        session_id: str,
        *,
        status: SessionStatus | None = None,
        case: CaseLink | None = None,
        subject: str | None = None,
    ) -> Session:
        sets = ["updated_at = %(now)s"]
        params: dict[str, object] = {"id": session_id}
        if status is not None:
            sets.append("status = %(status)s")
            params["status"] = SessionStatus(status).value
        if case is not None:
            sets.append("case_crm = %(crm)s, case_id = %(case_id)s, case_number = %(number)s,"
                        " case_url = %(url)s")
            params.update(crm=case.crm, case_id=case.case_id, number=case.number, url=case.url)
        if subject is not None:
            sets.append("subject = %(subject)s")
            params["subject"] = subject
        sql = f"UPDATE sessions SET {', '.join(sets)} WHERE id = %(id)s"  # noqa: S608
        async with self.db.tx() as conn:
            params["now"] = self.db.now()
            if (await conn.execute(sql.encode(), params)).rowcount == 0:
                raise RecordNotFound(f"no session with id {session_id!r}")
            stored = await self._session_by_id(conn, session_id)
            assert stored is not None
            return stored

    async def find_open_session(
        self, channel: str, contact_id: str, channel_address: str, active_since: datetime
    ) -> Session | None:
        since = rows.ts(active_since, "active_since")
        async with self.db.conn() as conn:
            found = await self._sessions(
                conn,
                "SELECT * FROM sessions WHERE contact_id = %s AND channel = %s"
                " AND channel_address = %s AND status <> 'closed'"
                " AND COALESCE(last_message_at, created_at) > %s"
                " ORDER BY COALESCE(last_message_at, created_at) DESC, created_at DESC LIMIT 1",
                (contact_id, channel, channel_address, since))
        return found[0] if found else None

    async def find_session_by_external_ids(
        self, channel: str, external_ids: Sequence[str]
    ) -> Session | None:
        ids = dedupe(external_ids)
        if not ids:
            return None
        async with self.db.conn() as conn:
            row = await _fetchone(
                conn, "SELECT session_id FROM messages WHERE channel = %s AND session_id <> ''"
                " AND external_id = ANY(%s) ORDER BY seq DESC LIMIT 1", (channel, ids))
            return None if row is None else await self._session_by_id(conn, row["session_id"])

    async def find_session_by_case(self, crm: str, case_id: str) -> Session | None:
        sessions = await self.sessions_by_case(crm, case_id)
        return sessions[0] if sessions else None

    async def sessions_by_case(self, crm: str, case_id: str) -> list[Session]:
        async with self.db.conn() as conn:
            return await self._sessions(
                conn, "SELECT * FROM sessions WHERE case_crm = %s AND case_id = %s"
                " ORDER BY created_at DESC, id DESC", (crm, case_id))

    async def list_sessions(
        self, *, status: SessionStatus | None = None, limit: int = 50, offset: int = 0
    ) -> list[Session]:
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, got {limit} and {offset}")
        where, params = (("WHERE status = %s", [SessionStatus(status).value]) if status
                         else ("", []))
        async with self.db.conn() as conn:
            return await self._sessions(
                conn, f"SELECT * FROM sessions {where}"  # noqa: S608
                " ORDER BY updated_at DESC, id DESC LIMIT %s OFFSET %s",
                (*params, limit, offset))

    async def count_sessions(self, status: SessionStatus | None = None) -> int:
        if status is None:
            row = await self.db.one("SELECT COUNT(*) AS n FROM sessions")
        else:
            row = await self.db.one("SELECT COUNT(*) AS n FROM sessions WHERE status = %s",
                                    (SessionStatus(status).value,))
        return int(row["n"]) if row else 0

    async def session_ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        # A range, not LIKE: no wildcards to escape. Compared in code point order ("C"), as
        # on SQLite, whatever the database's collation; index sessions_by_id_c serves it.
        found = await self.db.all(
            'SELECT id FROM sessions WHERE id COLLATE "C" >= %s AND id COLLATE "C" < %s'
            ' ORDER BY id COLLATE "C" LIMIT %s', (prefix, prefix + "\U0010ffff", limit))
        return [row["id"] for row in found]

    # -- messages ----------------------------------------------------------------------

    async def _insert_message(self, conn: Conn, row: dict[str, Any]) -> bool:
        if (await conn.execute(_INSERT_MESSAGE, row)).rowcount == 0:
            return False
        if row["session_id"]:
            await self._touch_session(conn, row["session_id"], row["received_at"])
        return True

    async def _touch_session(self, conn: Conn, session_id: str, at: datetime) -> None:
        changed = await conn.execute(
            "UPDATE sessions SET last_message_at = GREATEST(last_message_at, %s),"
            " updated_at = %s WHERE id = %s", (at, self.db.now(), session_id))
        if changed.rowcount == 0:
            raise RecordNotFound(f"no session with id {session_id!r}")

    async def accept_inbound(self, message: Message, job: NewJob, *, parsed_raw: str = ""
                             ) -> bool:
        row = rows.message_row(message)
        # PostgreSQL commits with a WAL flush (synchronous_commit on), so the caller may
        # acknowledge once this returns.
        async with self.db.tx() as conn:
            if parsed_raw:
                await conn.execute("DELETE FROM raw_inbounds WHERE id = %s", (parsed_raw,))
            if not await self._insert_message(conn, row):
                return False
            await self._insert_jobs_in(conn, [job])
            return True

    async def add_message(self, message: Message) -> bool:
        row = rows.message_row(message)
        async with self.db.tx() as conn:
            return await self._insert_message(conn, row)

    async def get_message(self, message_id: str) -> Message | None:
        row = await self.db.one("SELECT * FROM messages WHERE id = %s", (message_id,))
        return None if row is None else rows.message(row)

    async def assign_message(self, message_id: str, session_id: str) -> Message:
        if not session_id:
            raise ValueError(f"assign_message({message_id!r}): session_id must not be empty")
        async with self.db.tx() as conn:
            return await self._assign(conn, message_id, session_id)

    async def _assign(self, conn: Conn, message_id: str, session_id: str) -> Message:
        row = await _fetchone(conn, "SELECT * FROM messages WHERE id = %s FOR UPDATE",
                              (message_id,))
        if row is None:
            raise RecordNotFound(f"no message with id {message_id!r}")
        current = row["session_id"]
        if current == session_id:
            return rows.message(row)
        if current:
            raise ValueError(
                f"message {message_id!r} belongs to session {current!r}, not {session_id!r}")
        updated = await _fetchone(
            conn, "UPDATE messages SET session_id = %s WHERE id = %s RETURNING *",
            (session_id, message_id))
        await self._touch_session(conn, session_id, row["received_at"])
        assert updated is not None
        return rows.message(updated)

    async def transcript(self, session_id: str) -> list[Message]:
        if not session_id:
            return []
        found = await self.db.all("SELECT * FROM messages WHERE session_id = %s ORDER BY seq",
                                  (session_id,))
        return [rows.message(row) for row in found]

    # -- dropped inbounds --------------------------------------------------------------

    async def record_dropped(
        self, channel: str, external_id: str, sender: str, reason: str, received_at: datetime
    ) -> None:
        received = rows.ts(received_at, "received_at")
        async with self.db.tx() as conn:
            await conn.execute(
                "INSERT INTO dropped_inbounds (channel, external_id, sender, reason, received_at,"
                " recorded_at) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (channel, external_id) DO NOTHING",
                (channel, external_id, sender, reason, received, self.db.now()))

    async def list_dropped(self, limit: int = 100) -> list[DroppedInbound]:
        found = await self.db.all("SELECT * FROM dropped_inbounds ORDER BY seq DESC LIMIT %s",
                                  (limit,))
        return [rows.dropped(r) for r in found]


__all__ = ["Conversations"]
