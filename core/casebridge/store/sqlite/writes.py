"""The write log (CRM write intents and outcomes) and plugin state in SQLite: the
:class:`~casebridge.store.WriteLog` and :class:`~casebridge.store.PluginStateStore` parts
of the SQLite store."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from ..records import CrmWrite, CrmWriteKind, RecordNotFound
from ..rows import SQLITE as rows
from ..rows import to_json
from .db import Database

__all__ = ["PluginState", "WriteLog"]


class WriteLog:
    """Intents recorded before each CRM write, completed with the CRM's id after it."""

    db: Database

    async def record_intent(
        self, session_id: str, message_id: str, kind: CrmWriteKind, crm: str, key: str
    ) -> CrmWrite:
        if kind not in ("case", "activity", "attachment"):
            raise ValueError(f"CRM write kind must be case, activity or attachment, not {kind!r}")
        if not key or not session_id or not crm:
            raise ValueError("record_intent needs a key, a session_id and a crm")

        def run(conn: sqlite3.Connection) -> CrmWrite:
            now = rows.ts(self.db.now())
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
            return rows.write(row)

        return await self.db.tx(run)

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
                (crm_id, rows.ts(self.db.now()), key),
            )

        await self.db.tx(run)

    async def get_write(self, key: str) -> CrmWrite | None:
        def run(conn: sqlite3.Connection) -> CrmWrite | None:
            row = conn.execute("SELECT * FROM crm_writes WHERE key = ?", (key,)).fetchone()
            return None if row is None else rows.write(row)

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
