"""Content-addressed file storage shared by channels: each file is kept once, under its
SHA-256, as ``ab/abcdef...`` below a folder. The bridge's folder is ``<data_dir>/attachments``
(``Bridge.blob_dir``); an :class:`~casebridge.model.Attachment`'s ``location`` is relative
to it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from types import TracebackType

FOLDER = "attachments"
_LOCATION = re.compile(r"[0-9a-f]{2}/[0-9a-f]{64}")


def write_blob(folder: Path, data: bytes, digest: str | None = None) -> str:
    """Store ``data`` once under its SHA-256; returns its location relative to ``folder``.

    Written to a temporary file, synced and renamed, so a crash never leaves a partial file
    under the final name. Blocking: call it from a worker thread in async code.
    """
    digest = digest or hashlib.sha256(data).hexdigest()
    location = f"{digest[:2]}/{digest}"
    target = folder / digest[:2] / digest
    if target.exists():
        return location
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return location


class BlobWriter:
    """One blob written in pieces, for data too large to hold whole: each piece is hashed
    and appended to a temporary file in ``folder``; :meth:`commit` syncs the file and renames
    it to its SHA-256 (or drops it when that blob is already stored). Used as a context
    manager, a writer left uncommitted removes its temporary file.

    Past ``limit`` bytes the file is dropped and the rest only hashed and counted: ``size``
    and ``sha256`` still describe all of it, and :meth:`commit` refuses. Blocking: use it
    from a worker thread in async code.
    """

    def __init__(self, folder: Path, *, limit: int | None = None) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._folder = folder
        self._limit = limit
        self._hash = hashlib.sha256()
        self.size = 0
        fd, self._tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
        self._file = os.fdopen(fd, "wb")
        self._done = False

    @property
    def sha256(self) -> str:
        """The hex SHA-256 of everything written so far."""
        return self._hash.hexdigest()

    @property
    def over_limit(self) -> bool:
        return self._limit is not None and self.size > self._limit

    def write(self, piece: bytes | memoryview) -> None:
        self._hash.update(piece)
        self.size += len(piece)
        if self.over_limit:
            self.discard()
        elif not self._done:
            self._file.write(piece)

    def commit(self) -> str:
        """Make the blob durable under its digest; returns its location. Raises ValueError
        past the limit or after :meth:`discard`."""
        if self._done:
            raise ValueError("the blob was discarded (over its limit?)")
        digest = self.sha256
        target = self._folder / digest[:2] / digest
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self._tmp, target)
        finally:
            self.discard()
        return f"{digest[:2]}/{digest}"

    def discard(self) -> None:
        """Drop the temporary file (nothing more is written; hashing goes on)."""
        if self._done:
            return
        self._done = True
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.discard()


def blob_path(folder: Path, location: str) -> Path:
    """Where the blob at ``location`` is. Raises ValueError for a location this module did
    not write, so a stored value can never point outside ``folder``."""
    if not _LOCATION.fullmatch(location):
        raise ValueError(f"{location!r} is not a stored file's location")
    return folder / location
