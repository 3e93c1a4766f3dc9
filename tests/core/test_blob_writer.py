"""BlobWriter: a blob written in pieces lands where write_blob puts the same bytes, and no
temporary file outlives it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from casebridge.blobs import BlobWriter, blob_path, write_blob
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=40), max_size=5))
def test_pieces_are_stored_as_the_whole(tmp_path: Path, pieces: list[bytes]) -> None:
    whole = b"".join(pieces)
    with BlobWriter(tmp_path) as writer:
        for piece in pieces:
            writer.write(memoryview(piece))
        location = writer.commit()
    assert location == write_blob(tmp_path, whole)
    assert (writer.size, writer.sha256) == (len(whole), hashlib.sha256(whole).hexdigest())
    assert blob_path(tmp_path, location).read_bytes() == whole
    assert not [p for p in files(tmp_path) if p.name.startswith(".tmp-")]


def test_past_the_limit_nothing_is_kept_but_all_is_counted(tmp_path: Path) -> None:
    with BlobWriter(tmp_path, limit=5) as writer:
        writer.write(b"abc")
        writer.write(b"defg")
        assert writer.over_limit and files(tmp_path) == []
        writer.write(b"h")
        with pytest.raises(ValueError, match="discarded"):
            writer.commit()
    assert writer.size == 8 and writer.sha256 == hashlib.sha256(b"abcdefgh").hexdigest()
    assert files(tmp_path) == []


def test_a_failed_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"), BlobWriter(tmp_path) as writer:
        writer.write(b"data")
        writer.commit()
    assert files(tmp_path) == []


def test_an_abandoned_writer_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), BlobWriter(tmp_path) as writer:
        writer.write(b"half")
        raise RuntimeError("the message could not be read")
    assert files(tmp_path) == []


def test_bytes_already_stored_are_kept_once(tmp_path: Path) -> None:
    first = write_blob(tmp_path, b"same")
    with BlobWriter(tmp_path) as writer:
        writer.write(b"sa")
        writer.write(b"me")
        assert writer.commit() == first
    assert len(files(tmp_path)) == 1
