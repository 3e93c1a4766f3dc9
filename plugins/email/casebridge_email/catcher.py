"""The embedded outgoing-mail catcher: a local SMTP server that keeps what it receives.

A developer's relay, like Mailpit or MailHog: with ``[plugins.email.catcher]`` set, the bridge
runs an SMTP server on loopback that accepts mail for any recipient and keeps each message in
the data folder (``<folder>/<id>.eml`` and ``<id>.json`` for the envelope), so a newcomer sees
the email the customer would get, and the messages survive a restart.
:mod:`.catcher_pages` shows them. :func:`describe` (pure) turns a kept message into what the
pages show.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskStatus

from .mime import parse_email
from .settings import CatcherSettings
from .smtp_server import IngestEnvelope, SmtpIngest

log = logging.getLogger(__name__)

_ID = re.compile(r"\A[0-9]{20}-[0-9a-f]{8}\Z")
THREAD_HEADERS = ("Message-ID", "In-Reply-To", "References")


@dataclass(frozen=True, slots=True)
class CaughtMail:
    """One kept message: its id, the SMTP envelope and the raw bytes."""

    id: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    received_at: datetime
    data: bytes


@dataclass(frozen=True, slots=True)
class MailView:
    """What the catcher's pages show of one message. ``headers`` are (name, decoded value)
    in order; ``html`` is the HTML part as sent (the page sanitizes it); ``thread`` maps the
    threading headers present to their values."""

    subject: str
    from_: str
    to: str
    date: str
    headers: tuple[tuple[str, str], ...]
    text: str
    html: str
    thread: tuple[tuple[str, str], ...]
    attachments: tuple[str, ...]


def describe(data: bytes) -> MailView:
    """The view of a raw message. Never raises for malformed mail: what cannot be decoded is
    shown as the parser recovered it."""
    parsed = parse_email(data)
    message = BytesParser(policy=policy.compat32).parsebytes(data, headersonly=True)
    headers = tuple((name, _header_text(value)) for name, value in message.items())
    present = {name.lower(): value for name, value in headers}
    thread = tuple(
        (name, present[name.lower()]) for name in THREAD_HEADERS if name.lower() in present
    )
    return MailView(
        subject=parsed.subject,
        from_=present.get("from", ""),
        to=present.get("to", ""),
        date=present.get("date", ""),
        headers=headers,
        text=parsed.text,
        html=parsed.html,
        thread=thread,
        attachments=tuple(a.name for a in parsed.attachments),
    )


def _header_text(value: Any) -> str:
    raw = str(value)
    try:
        text = str(make_header(decode_header(raw)))
    except (LookupError, UnicodeError, ValueError):
        text = raw
    return " ".join(text.split())


def new_id(now_ns: int | None = None) -> str:
    """A message id that sorts in arrival order."""
    stamp = time.time_ns() if now_ns is None else now_ns
    return f"{stamp:020d}-{uuid.uuid4().hex[:8]}"


def is_id(value: str) -> bool:
    """Whether ``value`` is a well-formed message id (and so safe as a file name)."""
    return bool(_ID.match(value))


class CatcherStore:
    """The kept messages, one ``.eml`` and one ``.json`` per message in ``folder``."""

    def __init__(self, folder: Path, max_messages: int) -> None:
        self.folder = folder
        self.max_messages = max_messages

    def keep(self, envelope: IngestEnvelope) -> CaughtMail:
        """Write the message (data first, envelope last: a listing shows only complete
        messages), then drop the oldest beyond ``max_messages``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        mail = CaughtMail(
            new_id(), envelope.mail_from, envelope.rcpt_tos, datetime.now(UTC), envelope.data
        )
        _write(self.folder / f"{mail.id}.eml", mail.data)
        meta = {
            "mail_from": mail.mail_from,
            "rcpt_tos": list(mail.rcpt_tos),
            "received_at": mail.received_at.isoformat(),
            "peer": envelope.peer,
        }
        _write(self.folder / f"{mail.id}.json", json.dumps(meta).encode())
        for old in self.ids()[self.max_messages :]:
            for suffix in (".json", ".eml"):
                (self.folder / f"{old}{suffix}").unlink(missing_ok=True)
        return mail

    def ids(self) -> list[str]:
        """Ids of the kept messages, newest first."""
        if not self.folder.is_dir():
            return []
        found = [p.stem for p in self.folder.glob("*.json") if is_id(p.stem)]
        return sorted(found, reverse=True)

    def get(self, mail_id: str) -> CaughtMail | None:
        if not is_id(mail_id):
            return None
        try:
            meta = json.loads((self.folder / f"{mail_id}.json").read_text())
            data = (self.folder / f"{mail_id}.eml").read_bytes()
        except (OSError, ValueError):
            return None
        return CaughtMail(
            mail_id,
            str(meta.get("mail_from", "")),
            tuple(meta.get("rcpt_tos", ())),
            datetime.fromisoformat(meta["received_at"]),
            data,
        )

    def all(self, limit: int = 200) -> list[CaughtMail]:
        """The newest ``limit`` messages, newest first."""
        return [m for i in self.ids()[:limit] if (m := self.get(i)) is not None]

    def clear(self) -> int:
        """Delete every kept message; returns how many there were."""
        ids = self.ids()
        for mail_id in ids:
            for suffix in (".json", ".eml"):
                (self.folder / f"{mail_id}{suffix}").unlink(missing_ok=True)
        return len(ids)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class MailCatcher:
    """The catcher's SMTP server over a :class:`CatcherStore`; ``port`` is set once bound."""

    def __init__(self, settings: CatcherSettings, data_dir: Path) -> None:
        self.settings = settings
        self.store = CatcherStore(data_dir / settings.folder, settings.max_messages)
        self.port = settings.port

    async def _keep(self, envelope: IngestEnvelope) -> None:
        mail = await anyio.to_thread.run_sync(self.store.keep, envelope)
        log.info("mail catcher kept %s for %s", mail.id, ", ".join(mail.rcpt_tos))

    async def run(self, *, task_status: TaskStatus[Any] = anyio.TASK_STATUS_IGNORED) -> None:
        server = SmtpIngest(
            host=self.settings.host,
            port=self.settings.port,
            accepts=lambda _: True,
            max_size=self.settings.max_message_bytes,
            on_message=self._keep,
            hostname="casebridge-mail-catcher",
        )
        async with anyio.create_task_group() as tg:
            self.port = await tg.start(server.run)
            task_status.started()
