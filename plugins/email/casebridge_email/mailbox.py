"""The mailbox reader: a long-running service that takes customer mail out of an IMAP folder.

Exactly once, in this order for every message: fetch it (PEEK: nothing changes on the
server), hand it to the same ``on_message`` the SMTP server uses before its 250 (parse, loop
guards, trimming, threading, stored durably), then flag it \\Seen or move it, then advance the
cursor (:mod:`.imap_cursor`) in the plugin's state. A crash between any two steps repeats
at most the steps after the last one done, and the store's Message-ID dedupe makes a
repeated message a no-op. A server that drops the connection or restarts is reconnected with
backoff and read from the stored cursor.

The IMAP calls block (imapclient) and run in a worker thread, one at a time per mailbox; an
IDLE wait is cut into short slices so a shutdown never waits long for it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskStatus
from casebridge.plugin import BackoffPolicy, PermanentError, PluginState, backoff_delay

from .imap import ImapConnection
from .imap_cursor import Cursor, batches, cursor_from_state, pending, resume
from .settings import MailboxSettings
from .smtp_server import IngestEnvelope

log = logging.getLogger(__name__)

T = TypeVar("T")
PEER_PREFIX = "imap:"
IDLE_SLICE = 1.0  # seconds per blocking IDLE wait: how long a shutdown may wait for it
BATCH_COUNT = 50
BATCH_BYTES = 32 * 1024 * 1024
RECONNECT = BackoffPolicy(base=0.5, factor=2.0, cap=60.0, jitter=0.5)


def state_key(settings: MailboxSettings) -> str:
    """The plugin-state key of a mailbox's cursor: one per account and folder."""
    return f"imap:{settings.label}"


class MailboxReader:
    """Reads one folder forever. ``on_message`` stores a message durably or raises
    (:class:`PermanentError`: this message can never be stored; anything else: try later)."""

    def __init__(
        self,
        settings: MailboxSettings,
        *,
        state: PluginState,
        on_message: Callable[[IngestEnvelope], Awaitable[None]],
        max_message_bytes: int,
        base_dir: Path,
        reconnect: BackoffPolicy = RECONNECT,
    ) -> None:
        self.settings = settings
        self._state = state
        self._on_message = on_message
        self._max_bytes = max_message_bytes
        self._base_dir = base_dir
        self._reconnect = reconnect
        self._limiter = anyio.CapacityLimiter(1)
        self._rng = random.Random()  # jitter only

    async def run(self, *, task_status: TaskStatus[Any] = anyio.TASK_STATUS_IGNORED) -> None:
        """Read until cancelled. Ready at once: an unreachable server is retried in the
        background rather than keeping the whole bridge from starting."""
        task_status.started()
        failures = 0
        while True:
            wait = 0.0
            connection = ImapConnection(self.settings, self._base_dir)
            started = time.monotonic()
            try:
                await self._session(connection)
            except Exception as exc:
                # A session that ran a while before failing starts the backoff afresh.
                failures = 1 if time.monotonic() - started > 60 else failures + 1
                wait = backoff_delay(self._reconnect, failures, self._rng)
                log.warning(
                    "mailbox %s: %s; reconnecting in %.1fs",
                    self.settings.label,
                    _describe(exc),
                    wait,
                )
            finally:
                with anyio.CancelScope(shield=True):
                    await self._call(connection.close)
            await anyio.sleep(wait)

    async def _session(self, connection: ImapConnection) -> None:
        await self._call(connection.open)
        status = await self._call(connection.select)
        stored = cursor_from_state(await self._state.get(self._key))
        cursor, why = resume(stored, status.uidvalidity, self.settings.first_start)
        log.info("mailbox %s: connected, %s", self.settings.label, why)
        if cursor != stored:
            await self._save(cursor)
        idle = self.settings.idle and await self._call(connection.offers_idle)
        while True:
            cursor, found = await self._read_new(connection, cursor)
            if found or await self._call(connection.announced_new):
                # Mail that arrived meanwhile was announced in the answer to some other
                # command, and will not be announced again to IDLE: read once more. Only when
                # a search finds nothing and nothing was announced with it is IDLE safe.
                continue
            if idle:
                await self._idle(connection)
            else:
                await anyio.sleep(self.settings.poll_seconds)
                await self._call(connection.noop)

    async def _read_new(self, connection: ImapConnection, cursor: Cursor) -> tuple[Cursor, bool]:
        """Store, acknowledge and pass every message after the cursor: the cursor after, and
        whether there was any."""
        status = await self._call(connection.select)
        if status.uidvalidity != cursor.uidvalidity:
            raise ConnectionError(f"UIDVALIDITY changed to {status.uidvalidity} while connected")
        uids = pending(await self._call(connection.search, cursor.search_criteria()), cursor)
        sizes = await self._call(connection.sizes, uids)
        size_of = dict(sizes)
        for batch in batches(sizes, max_count=BATCH_COUNT, max_bytes=BATCH_BYTES):
            wanted = [u for u in batch if size_of[u] <= self._max_bytes]
            for uid in sorted(set(batch) - set(wanted)):
                log.warning(
                    "mailbox %s: UID %d is %d bytes, over max_message_bytes: left in the folder",
                    self.settings.label,
                    uid,
                    size_of[uid],
                )
            fetched = await self._call(connection.fetch, wanted)
            stored: list[int] = []
            finished = False
            try:
                for message in fetched:
                    if await self._store_one(message.uid, message.data):
                        stored.append(message.uid)
                finished = True
            finally:
                # What is stored is acknowledged and passed even if a later one failed.
                with anyio.CancelScope(shield=True):
                    await self._call(connection.acknowledge, stored)
                    done = batch if finished else stored
                    if done:
                        cursor = cursor.done_through(max(done))
                        await self._save(cursor)
        # Everything below UIDNEXT (read at SELECT, before the search) has been looked at.
        finished_pass = cursor.pass_finished(status.uidnext)
        if finished_pass != cursor:
            cursor = finished_pass
            await self._save(cursor)
        return cursor, bool(uids)

    async def _store_one(self, uid: int, data: bytes) -> bool:
        """Store one message; False when it can never be stored (left in the folder)."""
        s = self.settings
        envelope = IngestEnvelope(
            mail_from="",
            rcpt_tos=(s.address,) if s.address else (),
            data=data,
            peer=f"{PEER_PREFIX}{s.label}#{uid}",
        )
        try:
            await self._on_message(envelope)
        except PermanentError as exc:
            log.warning(
                "mailbox %s: UID %d cannot be stored, left in the folder: %s", s.label, uid, exc
            )
            return False
        return True

    async def _idle(self, connection: ImapConnection) -> None:
        """Wait in IDLE until the server reports a change or ``idle_seconds`` pass."""
        await self._call(connection.idle_start)
        try:
            deadline = time.monotonic() + self.settings.idle_seconds
            while (left := deadline - time.monotonic()) > 0:
                if await self._call(connection.idle_wait, min(IDLE_SLICE, left)):
                    break
        finally:
            with anyio.CancelScope(shield=True):
                await self._call(connection.idle_done)

    @property
    def _key(self) -> str:
        return state_key(self.settings)

    async def _save(self, cursor: Cursor) -> None:
        await self._state.put(self._key, cursor.to_state())

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)


def _describe(exc: BaseException) -> str:
    """A failure for the log: its type and text (IMAP errors carry the server's words,
    never our credentials)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__
