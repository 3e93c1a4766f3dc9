"""Where a mailbox reader stands in its folder, and what it reads next. Pure: no I/O.

IMAP names a message in a folder by its UID, which only grows, as long as the folder's
UIDVALIDITY stays the same. The reader keeps ``(uidvalidity, last_uid)`` in the plugin's state
and advances ``last_uid`` only after the messages up to it are stored and flagged or moved, so
a restart resumes right after the last message it finished: nothing skipped, and what it
repeats (a message stored but not yet flagged) is dropped by the store's Message-ID dedupe.
A changed UIDVALIDITY means the old UIDs mean nothing: the folder is read again from the start.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

FirstStart = Literal["unseen", "all"]


@dataclass(frozen=True, slots=True)
class Cursor:
    """``last_uid``: every message with a UID up to it is done. ``initial``: the first pass
    over a folder read for the first time with ``first_start = "unseen"``, which takes only
    the unseen messages (mail a person read before the bridge was set up is left alone)."""

    uidvalidity: int
    last_uid: int = 0
    initial: bool = False

    def __post_init__(self) -> None:
        if self.uidvalidity < 1:
            raise ValueError(f"uidvalidity must be positive, got {self.uidvalidity}")
        if self.last_uid < 0:
            raise ValueError(f"last_uid cannot be negative, got {self.last_uid}")

    def to_state(self) -> dict[str, Any]:
        return {"uidvalidity": self.uidvalidity, "last_uid": self.last_uid, "initial": self.initial}

    def search_criteria(self) -> list[str]:
        """The UID SEARCH for what is left to read (the caller drops UIDs <= ``last_uid``:
        ``n:*`` matches the newest message even when its UID is below ``n``)."""
        criteria = ["UID", f"{self.last_uid + 1}:*"]
        return ["UNSEEN", *criteria] if self.initial else criteria

    def done_through(self, uid: int) -> Cursor:
        """The cursor once every message up to ``uid`` is done (never moves backwards)."""
        return Cursor(self.uidvalidity, max(self.last_uid, uid), self.initial)

    def pass_finished(self, uidnext: int) -> Cursor:
        """The cursor after a full pass that began when the folder's UIDNEXT was ``uidnext``:
        the first pass is over, and everything below ``uidnext`` has been looked at."""
        return Cursor(self.uidvalidity, max(self.last_uid, uidnext - 1), False)


def cursor_from_state(value: object) -> Cursor | None:
    """The stored cursor, or None when there is none. Raises ValueError naming what is wrong
    with a stored value that is not a cursor."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"mailbox state is not a table: {type(value).__name__}")
    uidvalidity, last_uid = value.get("uidvalidity"), value.get("last_uid")
    if not isinstance(uidvalidity, int) or not isinstance(last_uid, int):
        raise ValueError("mailbox state lacks an integer uidvalidity and last_uid")
    return Cursor(uidvalidity, last_uid, bool(value.get("initial", False)))


def resume(stored: Cursor | None, uidvalidity: int, first_start: FirstStart) -> tuple[Cursor, str]:
    """Where to start reading a folder whose UIDVALIDITY is ``uidvalidity``, and why (for the
    log): where the stored cursor left off, or from the start of the folder."""
    if stored is None:
        return Cursor(uidvalidity, 0, first_start == "unseen"), "first start"
    if stored.uidvalidity != uidvalidity:
        # The old UIDs are void: read everything again; Message-ID dedupe drops repeats.
        return (
            Cursor(uidvalidity, 0, False),
            f"UIDVALIDITY changed from {stored.uidvalidity} to {uidvalidity}",
        )
    return stored, f"resuming after UID {stored.last_uid}"


def pending(uids: Iterable[int], cursor: Cursor) -> list[int]:
    """The UIDs still to read, oldest first, without repeats."""
    return sorted({u for u in uids if u > cursor.last_uid})


def batches(sizes: Sequence[tuple[int, int]], *, max_count: int, max_bytes: int) -> list[list[int]]:
    """``(uid, size)`` pairs in order, cut into runs of at most ``max_count`` messages and
    ``max_bytes`` bytes (a single larger message makes a batch of its own), so a burst of
    big mail never sits in memory at once."""
    if max_count < 1 or max_bytes < 1:
        raise ValueError("max_count and max_bytes must be positive")
    out: list[list[int]] = []
    current: list[int] = []
    total = 0
    for uid, size in sizes:
        if current and (len(current) >= max_count or total + size > max_bytes):
            out.append(current)
            current, total = [], 0
        current.append(uid)
        total += size
    if current:
        out.append(current)
    return out
