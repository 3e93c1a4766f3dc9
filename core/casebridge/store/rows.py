"""Values between casebridge's model and database rows, for every backend (pure; no I/O).

The backends store the same columns and differ in one thing: how a time is held. SQLite
keeps UTC ISO-8601 text with microseconds and "+00:00" (fixed width, so text order is time
order); PostgreSQL keeps ``timestamptz`` and hands back datetimes. A :class:`Rows` is built
with the :class:`TimeCodec` of its backend (:data:`SQLITE` and :data:`POSTGRES`), and also
knows whether plain text columns may hold NUL (PostgreSQL's cannot). Rows may be any mapping
from column name to value (``sqlite3.Row`` or a dict).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from ..model import (
    Attachment,
    Author,
    CaseLink,
    Contact,
    Direction,
    Message,
    RawInbound,
    Session,
    SessionStatus,
)
from .records import CrmWrite, DroppedInbound, Job

__all__ = [
    "LARGE_TEXT",
    "MAX_ERROR_CHARS",
    "POSTGRES",
    "SAME_AS_TEXT",
    "SQLITE",
    "Rows",
    "TimeCodec",
    "aware",
    "dedupe",
    "error_text",
    "to_json",
]

MAX_ERROR_CHARS = 4000
# A message text at least this long (characters) is written in pieces where the store can
# (SQLite: casebridge.store.sqlite.large_text, into the large_text column).
LARGE_TEXT = 1 << 20
# An original_text stored as this (an empty BLOB, which no text column value is) is the
# message's text; only a store whose text columns can hold a BLOB writes it.
SAME_AS_TEXT = b""

Row = Mapping[str, Any]

# Message fields stored as plain text columns (the JSON ones escape a NUL themselves).
TEXT_FIELDS = ("id", "channel", "external_id", "session_id", "sender", "text", "original_text",
               "html", "subject", "sender_name", "trace_id")


def aware(value: datetime, what: str = "time") -> datetime:
    """``value`` in UTC; ValueError naming ``what`` when it is naive."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def to_json(value: Any) -> str:
    """Canonical JSON text: equal values give equal text (compare-and-put relies on it)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def error_text(error: str) -> str:
    """``error`` cut to :data:`MAX_ERROR_CHARS` (a job keeps its last error)."""
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…"


def dedupe(values: Iterable[str]) -> list[str]:
    """The non-empty values, first occurrence kept, in order."""
    return list(dict.fromkeys(v for v in values if v))


@dataclass(frozen=True, slots=True)
class TimeCodec:
    """How a backend holds a time: ``encode`` gets an aware UTC datetime and returns the
    column value; ``decode`` turns a column value back into an aware UTC datetime."""

    name: str
    encode: Callable[[datetime], Any]
    decode: Callable[[Any], datetime]


def _large_text(row: Row) -> str | None:
    """The text of a message row whose text was written to its large_text column (SQLite),
    else None."""
    try:
        value = row["large_text"]
    except (IndexError, KeyError):  # sqlite3.Row / dict rows without the column
        return None
    return None if value is None else bytes(value).decode("utf-8")


def _iso_text(value: datetime) -> str:
    return value.isoformat(timespec="microseconds")


def _native(value: datetime) -> datetime:
    return value


def _as_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


ISO_TEXT = TimeCodec("UTC ISO-8601 text", _iso_text, datetime.fromisoformat)
TIMESTAMPTZ = TimeCodec("timestamptz", _native, _as_utc)


@dataclass(frozen=True, slots=True)
class Rows:
    """Row conversions for one backend."""

    times: TimeCodec
    # False where text columns cannot hold NUL: such a message is refused with a clear
    # error instead of a driver error half-way through a transaction.
    text_holds_nul: bool = True

    def ts(self, value: datetime, what: str = "time") -> Any:
        """The column value of an aware time; ValueError naming ``what`` when it is naive."""
        return self.times.encode(aware(value, what))

    def dt(self, value: Any) -> datetime:
        return self.times.decode(value)

    def opt_dt(self, value: Any | None) -> datetime | None:
        return None if value is None else self.times.decode(value)

    def message_row(self, m: Message) -> dict[str, Any]:
        """The ``messages`` columns of ``m`` (named parameters)."""
        if not self.text_holds_nul:
            for name in TEXT_FIELDS:
                if "\x00" in getattr(m, name):
                    raise ValueError(
                        f"Message.{name} of message {m.id!r} holds a NUL character, which"
                        f" this store's text columns cannot hold")
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
            "sent_at": self.ts(m.sent_at, "Message.sent_at"),
            "received_at": self.ts(m.received_at, "Message.received_at"),
            "trace_id": m.trace_id,
            "notes": to_json(list(m.notes)),
            "meta": to_json(dict(m.meta)),
        }

    def raw_row(self, raw_id: str, raw: RawInbound) -> dict[str, Any]:
        """The ``raw_inbounds`` columns of ``raw`` kept under ``raw_id``."""
        return {
            "id": raw_id,
            "channel": raw.channel,
            "payload": raw.payload,
            "fields": to_json(dict(raw.fields)),
            "sender": raw.sender,
            "transport_id": raw.transport_id,
            "peer": raw.peer,
            "received_at": self.ts(raw.received_at, "RawInbound.received_at"),
        }

    def raw(self, row: Row) -> RawInbound:
        return RawInbound(
            channel=row["channel"],
            payload=bytes(row["payload"]),
            fields=json.loads(row["fields"]),
            sender=row["sender"],
            transport_id=row["transport_id"],
            peer=row["peer"],
            received_at=self.dt(row["received_at"]),
        )

    def message(self, row: Row) -> Message:
        text = _large_text(row)
        if text is None:
            text = row["text"]
        original = row["original_text"]
        return Message(
            id=row["id"],
            channel=row["channel"],
            direction=Direction(row["direction"]),
            author=Author(row["author"]),
            external_id=row["external_id"] or "",
            sender=row["sender"],
            recipients=tuple(json.loads(row["recipients"])),
            text=text,
            original_text=(text if isinstance(original, bytes) and original == SAME_AS_TEXT
                           else original),
            html=row["html"],
            subject=row["subject"],
            sender_name=row["sender_name"],
            attachments=tuple(Attachment(**a) for a in json.loads(row["attachments"])),
            thread_refs=tuple(json.loads(row["thread_refs"])),
            sent_at=self.dt(row["sent_at"]),
            received_at=self.dt(row["received_at"]),
            session_id=row["session_id"],
            trace_id=row["trace_id"],
            notes=tuple(json.loads(row["notes"])),
            meta=json.loads(row["meta"]),
        )

    def session(self, row: Row, contact: Contact) -> Session:
        """The session of a ``sessions`` row; ``contact`` is the one its contact_id names."""
        case = None
        if row["case_crm"] is not None:
            case = CaseLink(crm=row["case_crm"], case_id=row["case_id"],
                            number=row["case_number"], url=row["case_url"])
        return Session(
            id=row["id"],
            channel=row["channel"],
            contact=contact,
            status=SessionStatus(row["status"]),
            channel_address=row["channel_address"],
            subject=row["subject"],
            case=case,
            created_at=self.dt(row["created_at"]),
            updated_at=self.dt(row["updated_at"]),
        )

    def job(self, row: Row) -> Job:
        return Job(
            id=row["id"],
            kind=row["kind"],
            payload=json.loads(row["payload"]),
            key=row["key"],
            order_key=row["order_key"],
            state=row["state"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            run_at=self.dt(row["run_at"]),
            lease_until=self.opt_dt(row["lease_until"]),
            worker_id=row["worker_id"],
            last_error=row["last_error"],
            trace_id=row["trace_id"],
            created_at=self.dt(row["created_at"]),
            updated_at=self.dt(row["updated_at"]),
        )

    def write(self, row: Row) -> CrmWrite:
        return CrmWrite(
            key=row["key"],
            session_id=row["session_id"],
            message_id=row["message_id"],
            kind=row["kind"],
            crm=row["crm"],
            crm_id=row["crm_id"],
            state=row["state"],
            attempts=row["attempts"],
            created_at=self.dt(row["created_at"]),
            updated_at=self.dt(row["updated_at"]),
        )

    def dropped(self, row: Row) -> DroppedInbound:
        return DroppedInbound(
            channel=row["channel"],
            external_id=row["external_id"],
            sender=row["sender"],
            reason=row["reason"],
            received_at=self.dt(row["received_at"]),
            recorded_at=self.dt(row["recorded_at"]),
        )


SQLITE = Rows(ISO_TEXT)
POSTGRES = Rows(TIMESTAMPTZ, text_holds_nul=False)
