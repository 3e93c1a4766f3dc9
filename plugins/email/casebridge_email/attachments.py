"""Content-addressed storage for attachments: ``folder/ab/abcdef...`` named by SHA-256.

The same bytes are stored once however many messages carry them. Files are written to a
temporary name, flushed to disk and renamed, so a crash never leaves a partial file under a
final name. Blocking I/O: call from a worker thread (``anyio.to_thread.run_sync``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from casebridge.plugin import Attachment, Blobs

from .mime import ExtractedPart


def store_attachments(
    parts: Iterable[ExtractedPart], folder: Path, *, max_bytes: int, max_count: int
) -> tuple[tuple[Attachment, ...], tuple[str, ...]]:
    """Store each part and describe it; parts over a limit are described but not stored.

    A refused part gets ``Attachment.refused`` (and a note) saying which limit it broke; the
    other parts are unaffected. Returns the attachments in order and the notes. Raises
    ``OSError`` when the folder cannot be written (the message is then not durable).
    """
    stored: list[Attachment] = []
    notes: list[str] = []
    kept = 0
    for part in parts:
        digest = hashlib.sha256(part.data).hexdigest()
        size = len(part.data)
        refused = ""
        if size > max_bytes:
            refused = f"{size} bytes is over the {max_bytes}-byte attachment limit"
        elif kept >= max_count:
            refused = f"over the limit of {max_count} attachments per message"
        location = ""
        if refused:
            notes.append(f"attachment {part.name!r} not kept: {refused}")
        else:
            location = Blobs(folder).write_sync(part.data, digest)
            kept += 1
        stored.append(
            Attachment(
                name=part.name,
                content_type=part.content_type,
                size=size,
                sha256=digest,
                location=location,
                content_id=part.content_id,
                inline=part.inline,
                refused=refused,
            )
        )
    return tuple(stored), tuple(notes)


def attachment_path(folder: Path, attachment: Attachment) -> Path:
    """Where a stored attachment's bytes are. Raises ValueError for a refused attachment or a
    location that is not one this module wrote (it never points outside ``folder``)."""
    try:
        if attachment.refused:
            raise ValueError(attachment.refused)
        return Blobs(folder).path(attachment.location)
    except ValueError:
        raise ValueError(f"attachment {attachment.name!r} has no stored file") from None
