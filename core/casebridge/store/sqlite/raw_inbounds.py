"""Raw inbounds kept until parsed (``receive_later``) in SQLite: part of the
:class:`~casebridge.store.ConversationStore`, composed into the SQLite store."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime

from ...model import RawInbound
from ..records import NewJob
from ..rows import SQLITE as rows
from .db import Database

__all__ = ["RawInbounds"]

_INSERT = """
INSERT INTO raw_inbounds (id, channel, payload, fields, sender, transport_id, peer, received_at)
VALUES (:id, :channel, :payload, :fields, :sender, :transport_id, :peer, :received_at)
"""


class RawInbounds:
    db: Database
    _durable_accept: bool
    # The job queue's insert (composed beside this in SqliteStore): the raw inbound and the
    # job that parses it are committed together.
    _insert_jobs: Callable[[sqlite3.Connection, Sequence[NewJob], datetime], None]

    async def accept_raw(self, raw_id: str, raw: RawInbound, job: NewJob) -> None:
        row = rows.raw_row(raw_id, raw)

        def run(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(_INSERT, row)
            except sqlite3.IntegrityError:
                raise ValueError(f"a raw inbound {raw_id!r} is already kept") from None
            self._insert_jobs(conn, [job], self.db.now())

        # FULL, as accept_inbound: the transport acknowledges once this returns.
        await self.db.tx(run, full_sync=self._durable_accept)

    async def get_raw(self, raw_id: str) -> RawInbound | None:
        def run(conn: sqlite3.Connection) -> RawInbound | None:
            row = conn.execute("SELECT * FROM raw_inbounds WHERE id = ?", (raw_id,)).fetchone()
            return None if row is None else rows.raw(row)

        return await self.db.read(run)

    async def delete_raw(self, raw_id: str) -> None:
        await self.db.tx(lambda conn: conn.execute(
            "DELETE FROM raw_inbounds WHERE id = ?", (raw_id,)))

    async def count_raw(self) -> int:
        return await self.db.read(
            lambda conn: int(conn.execute("SELECT COUNT(*) FROM raw_inbounds").fetchone()[0]))
