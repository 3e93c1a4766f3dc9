"""The write log (CRM write intents and outcomes) and plugin state in SQLite: the
:class:`~casebridge.store.WriteLog` and :class:`~casebridge.store.PluginStateStore` parts
of the SQLite store."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from ..records import CrmWrite, CrmWriteKind, RecordNotFound, WriteIntent, check_written
from ..rows import SQLITE as rows
from ..rows import to_json
from .db import Database

__all__ = ["PluginState", "WriteLog"]


_INTENT = (
    "INSERT INTO crm_writes (key, session_id, message_id, kind, crm, created_at, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (session_id, message_id, kind) DO UPDATE"
    " SET attempts = attempts + 1, updated_at = excluded.updated_at"
    " WHERE crm_writes.state = 'intent'"
)
# SQLite's default limit on a statement's parameters is 999 (older builds): stay under it.
_CHUNK = 500


def _intent(conn: sqlite3.Connection, intent: WriteIntent, now: str) -> CrmWrite:
    try:
        conn.execute(_INTENT, (intent.key, intent.session_id, intent.message_id, intent.kind,
                               intent.crm, now, now))
    except sqlite3.IntegrityError:
        raise ValueError(
            f"CRM write key {intent.key!r} is already used for another (session, message, kind)"
        ) from None
    row = conn.execute(
        "SELECT * FROM crm_writes WHERE session_id = ? AND message_id = ? AND kind = ?",
        (intent.session_id, intent.message_id, intent.kind),
    ).fetchone()
    return rows.write(row)


def _written(conn: sqlite3.Connection, key: str, crm_id: str, now: str) -> None:
    row = conn.execute("SELECT state, crm_id FROM crm_writes WHERE key = ?", (key,)).fetchone()
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
        (crm_id, now, key),
    )


class WriteLog:
    """Intents recorded before each CRM write, completed with the CRM's id after it."""

    db: Database

    async def record_intent(
        self, session_id: str, message_id: str, kind: CrmWriteKind, crm: str, key: str
    ) -> CrmWrite:
        return (await self.record_intents([WriteIntent(session_id, message_id, kind, crm,
                                                       key)]))[0]

    async def record_intents(self, intents: Sequence[WriteIntent]) -> list[CrmWrite]:
        for intent in intents:
            intent.check()
        if not intents:
            return []

        def run(conn: sqlite3.Connection) -> list[CrmWrite]:
            now = rows.ts(self.db.now())
            return [_intent(conn, intent, now) for intent in intents]

        return await self.db.tx(run)

    async def record_written(self, key: str, crm_id: str) -> None:
        await self.record_all_written([(key, crm_id)])

    async def record_all_written(self, written: Sequence[tuple[str, str]]) -> None:
        check_written(written)
        if not written:
            return

        def run(conn: sqlite3.Connection) -> None:
            now = rows.ts(self.db.now())
            for key, crm_id in written:
                _written(conn, key, crm_id, now)

        await self.db.tx(run)

    async def get_write(self, key: str) -> CrmWrite | None:
        return (await self.get_writes([key])).get(key)

    async def get_writes(self, keys: Sequence[str]) -> dict[str, CrmWrite]:
        if not keys:
            return {}
        unique = list(dict.fromkeys(keys))

        def run(conn: sqlite3.Connection) -> dict[str, CrmWrite]:
            found: dict[str, CrmWrite] = {}
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start:start + _CHUNK]
                marks = ", ".join("?" * len(chunk))  # placeholders only: no value in the text
                for row in conn.execute(
                        f"SELECT * FROM crm_writes WHERE key IN ({marks})", chunk):  # noqa: S608
                    found[row["key"]] = rows.write(row)
            return found

        return await self.db.read(run)


_UPSERT_STATE = (
    "INSERT INTO plugin_state (plugin, key, value, updated_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (plugin, key) DO UPDATE"
    " SET value = excluded.value, updated_at = excluded.updated_at"
)


def _state_json(plugin: str, key: str, value: Any) -> str:
    try:
        return to_json(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"state {plugin}/{key} is not JSON-serializable: {exc}") from None


class PluginState:
    """Each plugin's JSON values under its own keys."""

    db: Database

    async def put_state(self, plugin: str, key: str, value: Any) -> None:
        text = _state_json(plugin, key, value)
        await self.db.tx(
            lambda conn: conn.execute(
                _UPSERT_STATE, (plugin, key, text, rows.ts(self.db.now()))
            )
        )

    async def get_state(self, plugin: str, key: str) -> Any | None:
        def run(conn: sqlite3.Connection) -> Any | None:
            row = conn.execute(
                "SELECT value FROM plugin_state WHERE plugin = ? AND key = ?", (plugin, key)
            ).fetchone()
            return None if row is None else json.loads(row[0])

        return await self.db.read(run)

    async def delete_state(self, plugin: str, key: str) -> None:
        await self.db.tx(
            lambda conn: conn.execute(
                "DELETE FROM plugin_state WHERE plugin = ? AND key = ?", (plugin, key)
            )
        )

    async def compare_and_put_state(
        self, plugin: str, key: str, expected: Any | None, value: Any | None
    ) -> bool:
        want = None if expected is None else _state_json(plugin, key, expected)
        new = None if value is None else _state_json(plugin, key, value)

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT value FROM plugin_state WHERE plugin = ? AND key = ?", (plugin, key)
            ).fetchone()
            current = None if row is None else to_json(json.loads(row[0]))
            if current != want:
                return False
            if new is None:
                conn.execute("DELETE FROM plugin_state WHERE plugin = ? AND key = ?", (plugin, key))
            else:
                conn.execute(_UPSERT_STATE, (plugin, key, new, rows.ts(self.db.now())))
            return True

        return await self.db.tx(run)
