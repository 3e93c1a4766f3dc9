"""The PostgreSQL store's connection pool, clock and transaction helper, shared by the
parts (conversations, writes, state, jobs) composed into :class:`~casebridge.pgstore.PgStore`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from ..errors import CasebridgeError
from ..model import utcnow
from .migrate import apply_migrations

__all__ = ["Clock", "Conn", "Database", "StoreUnavailable", "redact"]

Clock = Callable[[], datetime]
Conn = psycopg.AsyncConnection[dict[str, Any]]


class StoreUnavailable(CasebridgeError):
    """The PostgreSQL store cannot be reached or refused the login."""


def redact(url: str) -> str:
    """The URL without its password, for logs and errors."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://<unparsable url>"
    user = f"{info['user']}@" if info.get("user") else ""
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{info.get('host', '')}{port}/{info.get('dbname', '')}"


class Database:
    """A pool of autocommit connections; :meth:`tx` runs one transaction on one of them."""

    def __init__(self, url: str, *, clock: Clock = utcnow, max_connections: int = 10) -> None:
        self.url = url
        self._clock = clock
        self._max = max_connections
        self._pool: AsyncConnectionPool[Conn] | None = None

    def __repr__(self) -> str:
        return f"PgStore({redact(self.url)!r})"

    def now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the store's clock must return timezone-aware datetimes")
        return now

    async def open(self) -> None:
        if self._pool is not None:
            return
        await self._probe()
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self.url,
            min_size=1,
            max_size=self._max,
            open=False,
            # UTC sessions: times come back as UTC whatever the server's default zone.
            kwargs={"autocommit": True, "row_factory": dict_row, "options": "-c TimeZone=UTC"},
        )
        try:
            await pool.open(wait=True, timeout=30)
            async with pool.connection() as conn:
                await apply_migrations(conn)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def _probe(self) -> None:
        """Connect once first, so a wrong URL fails at once with libpq's reason (which
        names host and user, never the password) instead of a pool timeout."""
        try:
            conn = await psycopg.AsyncConnection.connect(self.url, connect_timeout=10)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(
                f"cannot open the PostgreSQL store at {redact(self.url)}: {reason}"
            ) from None
        await conn.close()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def pool(self) -> AsyncConnectionPool[Conn]:
        if self._pool is None:
            raise RuntimeError(f"{self!r} is not open: call open() or use 'async with'")
        return self._pool

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Conn]:
        """One transaction (committed when the block ends without an error)."""
        async with self.pool().connection() as conn, conn.transaction():
            yield conn

    @asynccontextmanager
    async def conn(self) -> AsyncIterator[Conn]:
        """A connection for reads outside a transaction (each statement its own)."""
        async with self.pool().connection() as conn:
            yield conn

    async def one(self, sql: str, params: Any = ()) -> dict[str, Any] | None:
        async with self.conn() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchone()

    async def all(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        async with self.conn() as conn:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

    async def ping(self) -> None:
        await self.one("SELECT 1 AS one")

    async def schema_version(self) -> int:
        row = await self.one("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version")
        return int(row["v"]) if row else 0
