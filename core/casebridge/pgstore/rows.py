"""Values between casebridge's model and PostgreSQL rows (pure; no I/O)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from ..model import Attachment, Author, Direction, Message
from ..store import CrmWrite, Job

MAX_ERROR_CHARS = 4000


def aware(value: datetime, what: str = "time") -> datetime:
    """``value`` in UTC; ValueError naming ``what`` when it is naive."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def to_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def error_text(error: str) -> str:
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…"


def dedupe(values: Any) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


# PostgreSQL text cannot hold NUL; JSON columns escape it, these plain ones cannot.
TEXT_FIELDS = ("id", "channel", "external_id", "session_id", "sender", "text", "original_text",
               "html", "subject", "sender_name", "trace_id")


def message_row(m: Message) -> dict[str, Any]:
    for name in TEXT_FIELDS:
        if "\x00" in getattr(m, name):
            raise ValueError(
                f"Message.{name} of message {m.id!r} holds a NUL character, which PostgreSQL"
                " text cannot store")
    return {
        "id": m.id,
        "channel": m.channel,
        "external_id": m.external_id or None,
        "session_id": m.session_id,
        "direction": Direction(m.direction).value,
        "author": Author(m.author).value,
        "sender": m.sender,
        "recipients": to_json(list(m.recipients)),
        "text": m.text,
        "original_text": m.original_text,
        "html": m.html,
        "subject": m.subject,
        "sender_name": m.sender_name,
        "attachments": to_json([asdict(a) for a in m.attachments]),
        "thread_refs": to_json(list(m.thread_refs)),
        "sent_at": aware(m.sent_at, "Message.sent_at"),
        "received_at": aware(m.received_at, "Message.received_at"),
        "trace_id": m.trace_id,
        "notes": to_json(list(m.notes)),
        "meta": to_json(dict(m.meta)),
    }


def message(row: dict[str, Any]) -> Message:
    return Message(
        id=row["id"],
        channel=row["channel"],
        direction=Direction(row["direction"]),
        author=Author(row["author"]),
        external_id=row["external_id"] or "",
        sender=row["sender"],
        recipients=tuple(json.loads(row["recipients"])),
        text=row["text"],
        original_text=row["original_text"],
        html=row["html"],
        subject=row["subject"],
        sender_name=row["sender_name"],
        attachments=tuple(Attachment(**a) for a in json.loads(row["attachments"])),
        thread_refs=tuple(json.loads(row["thread_refs"])),
        sent_at=row["sent_at"].astimezone(UTC),
        received_at=row["received_at"].astimezone(UTC),
        session_id=row["session_id"],
        trace_id=row["trace_id"],
        notes=tuple(json.loads(row["notes"])),
        meta=json.loads(row["meta"]),
    )


def job(row: dict[str, Any]) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        payload=json.loads(row["payload"]),
        key=row["key"],
        order_key=row["order_key"],
        state=row["state"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        run_at=row["run_at"].astimezone(UTC),
        lease_until=utc(row["lease_until"]),
        worker_id=row["worker_id"],
        last_error=row["last_error"],
        trace_id=row["trace_id"],
        created_at=row["created_at"].astimezone(UTC),
        updated_at=row["updated_at"].astimezone(UTC),
    )


def write(row: dict[str, Any]) -> CrmWrite:
    return CrmWrite(
        key=row["key"],
        session_id=row["session_id"],
        message_id=row["message_id"],
        kind=row["kind"],
        crm=row["crm"],
        crm_id=row["crm_id"],
        state=row["state"],
        attempts=row["attempts"],
        created_at=row["created_at"].astimezone(UTC),
        updated_at=row["updated_at"].astimezone(UTC),
    )
