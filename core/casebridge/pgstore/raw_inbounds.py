"""Raw inbounds kept until parsed (``receive_later``) on PostgreSQL: part of the
conversation store, composed into :class:`~casebridge.pgstore.PgStore`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import psycopg

from ..model import RawInbound
from ..store.records import NewJob
from ..store.rows import POSTGRES as rows
from .db import Conn, Database

__all__ = ["RawInbounds"]

_INSERT = """
INSERT INTO raw_inbounds (id, channel, payload, fields, sender, transport_id, peer, received_at)
VALUES (%(id)s, %(channel)s, %(payload)s, %(fields)s, %(sender)s, %(transport_id)s, %(peer)s,
    %(received_at)s)
"""


class RawInbounds:
    db: Database
    # The job queue's insert (composed beside this in PgStore): the raw inbound and the job
    # that parses it are committed together.
    _insert_jobs_in: Callable[[Conn, Sequence[NewJob]], Awaitable[None]]

    async def accept_raw(self, raw_id: str, raw: RawInbound, job: NewJob) -> None:
        row = rows.raw_row(raw_id, raw)
        # A commit flushes the WAL (synchronous_commit on): durable once this returns.
        try:
            async with self.db.tx() as conn:
                await conn.execute(_INSERT, row)
                await self._insert_jobs_in(conn, [job])
        except psycopg.errors.UniqueViolation:
            raise ValueError(f"a raw inbound {raw_id!r} is already kept") from None

    async def get_raw(self, raw_id: str) -> RawInbound | None:
        row = await self.db.one("SELECT * FROM raw_inbounds WHERE id = %s", (raw_id,))
        return None if row is None else rows.raw(row)

    async def delete_raw(self, raw_id: str) -> None:
        async with self.db.tx() as conn:
            await conn.execute("DELETE FROM raw_inbounds WHERE id = %s", (raw_id,))

    async def count_raw(self) -> int:
        row = await self.db.one("SELECT COUNT(*) AS n FROM raw_inbounds")
        return int(row["n"]) if row else 0
