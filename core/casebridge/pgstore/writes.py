"""The write log (CRM write intents and outcomes) and plugin state on
PostgreSQL; guarantees as documented in :mod:`casebridge.store`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg

from ..store.records import (
    CrmWrite,
    CrmWriteKind,
    RecordNotFound,
    WriteIntent,
    check_written,
)
from ..store.rows import POSTGRES as rows
from ..store.rows import to_json
from .db import Database

__all__ = ["PluginState", "WriteLog"]


_INTENT = (
    "INSERT INTO crm_writes (key, session_id, message_id, kind, crm, created_at, updated_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (session_id, message_id, kind) DO UPDATE"
    " SET attempts = crm_writes.attempts + 1, updated_at = excluded.updated_at"
    " WHERE crm_writes.state = 'intent'"
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
        now = self.db.now()
        found: list[CrmWrite] = []
        current = intents[0]
        try:
            async with self.db.tx() as conn:
                for current in intents:
                    await conn.execute(_INTENT, (
                        current.key, current.session_id, current.message_id, current.kind,
                        current.crm, now, now))
                    cur = await conn.execute(
                        "SELECT * FROM crm_writes WHERE session_id = %s AND message_id = %s"
                        " AND kind = %s", (current.session_id, current.message_id, current.kind))
                    row = await cur.fetchone()
                    assert row is not None
                    found.append(rows.write(row))
        except psycopg.errors.UniqueViolation:
            raise ValueError(
                f"CRM write key {current.key!r} is already used for another"
                " (session, message, kind)"
            ) from None
        return found

    async def record_written(self, key: str, crm_id: str) -> None:
        await self.record_all_written([(key, crm_id)])

    async def record_all_written(self, written: Sequence[tuple[str, str]]) -> None:
        check_written(written)
        if not written:
            return
        now = self.db.now()
        async with self.db.tx() as conn:
            for key, crm_id in written:
                cur = await conn.execute(
                    "SELECT state, crm_id FROM crm_writes WHERE key = %s FOR UPDATE", (key,))
                row = await cur.fetchone()
                if row is None:
                    raise RecordNotFound(f"no CRM write intent with key {key!r}")
                if row["state"] == "written":
                    if row["crm_id"] != crm_id:
                        raise ValueError(
                            f"CRM write {key!r} was recorded as {row['crm_id']!r};"
                            f" refusing to record a second CRM id {crm_id!r}")
                    continue
                await conn.execute(
                    "UPDATE crm_writes SET state = 'written', crm_id = %s, updated_at = %s"
                    " WHERE key = %s", (crm_id, now, key))

    async def get_write(self, key: str) -> CrmWrite | None:
        return (await self.get_writes([key])).get(key)

    async def get_writes(self, keys: Sequence[str]) -> dict[str, CrmWrite]:
        if not keys:
            return {}
        found = await self.db.all("SELECT * FROM crm_writes WHERE key = ANY(%s)",
                                  (list(dict.fromkeys(keys)),))
        return {row["key"]: rows.write(row) for row in found}


class PluginState:
    """Small JSON values plugins keep between runs (cursors, tokens' metadata)."""

    db: Database

    @staticmethod
    def _state_json(plugin: str, key: str, value: Any) -> str:
        try:
            return to_json(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"state {plugin}/{key} is not JSON-serializable: {exc}") from None

    _UPSERT = (
        "INSERT INTO plugin_state (plugin, key, value, updated_at) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (plugin, key) DO UPDATE"
        " SET value = excluded.value, updated_at = excluded.updated_at"
    )

    async def put_state(self, plugin: str, key: str, value: Any) -> None:
        text = self._state_json(plugin, key, value)
        async with self.db.tx() as conn:
            await conn.execute(self._UPSERT, (plugin, key, text, self.db.now()))

    async def get_state(self, plugin: str, key: str) -> Any | None:
        row = await self.db.one(
            "SELECT value FROM plugin_state WHERE plugin = %s AND key = %s", (plugin, key))
        return None if row is None else json.loads(row["value"])

    async def delete_state(self, plugin: str, key: str) -> None:
        async with self.db.tx() as conn:
            await conn.execute("DELETE FROM plugin_state WHERE plugin = %s AND key = %s",
                               (plugin, key))

    async def compare_and_put_state(
        self, plugin: str, key: str, expected: Any | None, value: Any | None
    ) -> bool:
        want = None if expected is None else self._state_json(plugin, key, expected)
        new = None if value is None else self._state_json(plugin, key, value)
        async with self.db.tx() as conn:
            # The lock makes compare-then-write atomic even when the row does not exist yet.
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s || chr(31) || %s, 2))",
                (plugin, key))
            cur = await conn.execute(
                "SELECT value FROM plugin_state WHERE plugin = %s AND key = %s", (plugin, key))
            row = await cur.fetchone()
            current = None if row is None else to_json(json.loads(row["value"]))
            if current != want:
                return False
            if new is None:
                await conn.execute("DELETE FROM plugin_state WHERE plugin = %s AND key = %s",
                                   (plugin, key))
            else:
                await conn.execute(self._UPSERT, (plugin, key, new, self.db.now()))
            return True
