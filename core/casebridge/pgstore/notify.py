"""LISTEN/NOTIFY: wake this process's idle outbox workers when any runner enqueues work."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import psycopg

from .db import redact
from .jobs import CHANNEL

__all__ = ["listen_for_jobs"]

log = logging.getLogger(__name__)

_RECONNECT_SECONDS = 1.0


async def listen_for_jobs(url: str, wake: Callable[[int | None], None]) -> None:
    """Call ``wake`` on every job notification until cancelled, with how many jobs it
    announced (None: unknown, wake every idle worker); reconnects after a lost connection
    (workers still poll meanwhile, so a gap only delays them)."""
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                wake(None)  # anything enqueued before LISTEN took effect
                async for notice in conn.notifies():
                    wake(int(notice.payload) if notice.payload.isdigit() else None)
        except psycopg.Error as exc:
            log.warning("job notifications from %s lost (%s); reconnecting",
                        redact(url), type(exc).__name__)
        await anyio.sleep(_RECONNECT_SECONDS)
