"""A settable clock and sample records for the store and outbox tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from casebridge.model import Author, Contact, Direction, Message, Session, SessionStatus
from casebridge.store import ConversationStore, NewJob

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def make_message(n: int, **changes: object) -> Message:
    """Inbound email number ``n`` (external id ``<n@mail.example.com>``), received n seconds
    after :data:`T0`; ``changes`` replace fields."""
    message = Message(
        id=f"msg-{n}",
        channel="email",
        direction=Direction.INBOUND,
        author=Author.CUSTOMER,
        external_id=f"<{n}@mail.example.com>",
        sender="ann@example.com",
        recipients=("support@example.org",),
        text=f"message {n}",
        sent_at=T0,
        received_at=T0 + timedelta(seconds=n),
    )
    return replace(message, **changes)  # type: ignore[arg-type]


def job_for(n: int) -> NewJob:
    """The inbound job of :func:`make_message` ``n``."""
    return NewJob("thread", {"message_id": f"msg-{n}"}, key=f"thread:{n}")


async def stored_contact(store: ConversationStore, n: int = 1) -> Contact:
    return await store.create_contact(
        Contact(id=f"c{n}", name=f"Ann {n}", emails=(f"ann{n}@example.com",))
    )


async def stored_session(
    store: ConversationStore, contact: Contact, sid: str = "s1", **changes: object
) -> Session:
    session = Session(
        id=sid,
        channel="email",
        contact=contact,
        status=SessionStatus.ASSISTANT,
        channel_address="support@example.org",
        created_at=T0,
        updated_at=T0,
    )
    return await store.create_session(replace(session, **changes))  # type: ignore[arg-type]
