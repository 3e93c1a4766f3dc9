"""store_attachments: content addressing, atomic writes, limits."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from casebridge.plugin import Attachment, Blobs
from casebridge_email.attachments import attachment_path, store_attachments
from casebridge_email.mime import ExtractedPart
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def part(data: bytes, name: str = "f.bin", **kw: object) -> ExtractedPart:
    return ExtractedPart(name=name, content_type="application/octet-stream", data=data, **kw)


def test_stores_by_sha256_and_describes(tmp_path: Path) -> None:
    data = b"%PDF-1.4 invoice"
    digest = hashlib.sha256(data).hexdigest()
    logo = ExtractedPart("logo.png", "image/png", b"\x89PNG", content_id="logo@x", inline=True)
    (pdf, img), notes = store_attachments(
        [part(data, "invoice.pdf"), logo], tmp_path, max_bytes=100, max_count=5
    )
    assert notes == ()
    assert pdf == Attachment(
        name="invoice.pdf",
        content_type="application/octet-stream",
        size=len(data),
        sha256=digest,
        location=f"{digest[:2]}/{digest}",
    )
    assert (tmp_path / digest[:2] / digest).read_bytes() == data
    assert (img.content_id, img.inline) == ("logo@x", True)
    assert attachment_path(tmp_path, img).read_bytes() == b"\x89PNG"


def test_same_bytes_stored_once(tmp_path: Path) -> None:
    atts, _ = store_attachments(
        [part(b"same", "a"), part(b"same", "b")], tmp_path, max_bytes=10, max_count=5
    )
    assert atts[0].location == atts[1].location
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 1


def test_over_size_is_refused_and_others_kept(tmp_path: Path) -> None:
    atts, notes = store_attachments(
        [part(b"x" * 11, "big.iso"), part(b"small", "ok.txt")], tmp_path, max_bytes=10, max_count=5
    )
    big, ok = atts
    assert big.location == "" and "11 bytes is over the 10-byte attachment limit" in big.refused
    assert big.size == 11 and big.sha256 == hashlib.sha256(b"x" * 11).hexdigest()
    assert ok.refused == "" and attachment_path(tmp_path, ok).read_bytes() == b"small"
    assert notes == ("attachment 'big.iso' not kept: " + big.refused,)
    with pytest.raises(ValueError, match=r"big\.iso"):
        attachment_path(tmp_path, big)


def test_over_count_is_refused(tmp_path: Path) -> None:
    atts, notes = store_attachments(
        [part(bytes([i]), f"{i}.bin") for i in range(4)], tmp_path, max_bytes=10, max_count=2
    )
    assert [bool(a.location) for a in atts] == [True, True, False, False]
    assert all("limit of 2 attachments" in a.refused for a in atts[2:])
    assert len(notes) == 2


def test_refused_for_size_does_not_use_up_the_count(tmp_path: Path) -> None:
    atts, _ = store_attachments(
        [part(b"toolarge"), part(b"a"), part(b"b")], tmp_path, max_bytes=3, max_count=2
    )
    assert [bool(a.location) for a in atts] == [False, True, True]


def test_failed_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        Blobs(tmp_path).write_sync(b"data")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_locations_outside_the_folder_are_rejected(tmp_path: Path) -> None:
    evil = Attachment("x", "text/plain", 1, "0" * 64, location="../../etc/passwd")
    with pytest.raises(ValueError, match="no stored file"):
        attachment_path(tmp_path, evil)


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=64), max_size=6))
def test_every_stored_blob_reads_back(tmp_path: Path, blobs: list[bytes]) -> None:
    atts, _ = store_attachments([part(b) for b in blobs], tmp_path, max_bytes=64, max_count=10)
    for blob, att in zip(blobs, atts, strict=True):
        assert attachment_path(tmp_path, att).read_bytes() == blob
        assert att.sha256 == hashlib.sha256(blob).hexdigest()
