"""The mailbox reader on its own against a real Dovecot: a message is flagged only after
``on_message`` (the durable store) returned, a failing store leaves it untouched to be read
again, and a message that can never be stored is passed but left unflagged."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import anyio
import pytest
from casebridge.plugin import BackoffPolicy, PermanentError, Secret
from casebridge_email.mailbox import MailboxReader, state_key
from casebridge_email.settings import MailboxSettings
from casebridge_email.smtp_server import IngestEnvelope
from support.dovecot import PASSWORD, USER, Dovecot, mail

FAST = BackoffPolicy(base=0.05, factor=2.0, cap=0.2, jitter=0.0)


class MemoryState:
    """The plugin's state (``PluginContext.state``: the part the reader uses), in memory."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def get(self, key: str) -> Any | None:
        return self.values.get(key)

    async def put(self, key: str, value: Any) -> None:
        self.values[key] = value


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot().start()
    try:
        yield server
    finally:
        server.close()


def settings(server: Dovecot) -> MailboxSettings:
    return MailboxSettings(
        host="127.0.0.1",
        port=server.port,
        tls="none",
        username=USER,
        password=Secret(PASSWORD),
        first_start="all",
        poll_seconds=0.2,
    )


async def until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` (blocking: it may ask Dovecot) until it holds."""
    with anyio.fail_after(15):
        while not await anyio.to_thread.run_sync(predicate):  # noqa: ASYNC110
            await anyio.sleep(0.05)


def message_id(envelope: IngestEnvelope) -> str:
    return str(BytesParser().parsebytes(envelope.data)["Message-ID"]).strip("<>")


async def test_flagged_only_after_the_store_returned_and_retried_when_it_failed(
    dovecot: Dovecot,
) -> None:
    dovecot.append(mail(1), mail(2))
    state = MemoryState()
    stored: list[str] = []
    flags_while_storing: list[str] = []
    failures = {"msg-2@customer.example": 2}  # the store is down twice for message 2

    async def on_message(envelope: IngestEnvelope) -> None:
        ident = message_id(envelope)
        flags_while_storing.append(await anyio.to_thread.run_sync(lambda: dovecot.flags()[ident]))
        if failures.get(ident):
            failures[ident] -= 1
            raise OSError("database is locked")
        stored.append(ident)

    reader = MailboxReader(
        settings(dovecot),
        state=state,  # type: ignore[arg-type]
        on_message=on_message,
        max_message_bytes=10**6,
        base_dir=Path("."),
        reconnect=FAST,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(reader.run)
        await until(
            lambda: len(stored) == 2 and all("\\Seen" in f for f in dovecot.flags().values())
        )
        tg.cancel_scope.cancel()
    # Each message was unflagged while it was being stored; message 2 was offered three
    # times (twice failing), message 1 once: it was flagged and passed before 2 failed.
    assert all("\\Seen" not in f for f in flags_while_storing)
    assert stored == ["msg-1@customer.example", "msg-2@customer.example"]
    assert len(flags_while_storing) == 4
    cursor = state.values[state_key(settings(dovecot))]
    assert cursor["last_uid"] == 2


async def test_a_message_that_can_never_be_stored_is_passed_and_left_unflagged(
    dovecot: Dovecot,
) -> None:
    dovecot.append(mail(1), mail(2))
    state = MemoryState()
    offered: list[str] = []

    async def on_message(envelope: IngestEnvelope) -> None:
        ident = message_id(envelope)
        offered.append(ident)
        if ident == "msg-1@customer.example":
            raise PermanentError("not a message")

    reader = MailboxReader(
        settings(dovecot),
        state=state,  # type: ignore[arg-type]
        on_message=on_message,
        max_message_bytes=10**6,
        base_dir=Path("."),
        reconnect=FAST,
    )
    async with anyio.create_task_group() as tg:
        await tg.start(reader.run)
        await until(lambda: "\\Seen" in dovecot.flags().get("msg-2@customer.example", ""))
        dovecot.append(mail(3))  # and the reader goes on past it
        await until(lambda: "msg-3@customer.example" in offered)
        tg.cancel_scope.cancel()
    assert offered == ["msg-1@customer.example", "msg-2@customer.example", "msg-3@customer.example"]
    assert "\\Seen" not in dovecot.flags()["msg-1@customer.example"]
