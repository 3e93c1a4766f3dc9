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


def blob_path(folder: Path, location: str) -> Path:
    """Where the blob at ``location`` is. Raises ValueError for a location this module did
    not write, so a stored value can never point outside ``folder``."""
    if not _LOCATION.fullmatch(location):
        raise ValueError(f"{location!r} is not a stored file's location")
    return folder / location
