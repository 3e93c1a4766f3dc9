"""Runners on one PostgreSQL share one data folder (docs/blobs.md): several processes
writing the same content-addressed blob at once, or making the link key at once, end with
one whole file that every reader sees whole."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

from casebridge import blobs
from casebridge.bridge import Bridge

WRITERS = 4
SMALL = [f"attachment {n} ".encode() * (n + 1) for n in range(60)]
LARGE = os.urandom(4 << 20)


def write_all(folder: str) -> list[str]:
    """One runner's writes: every small blob whole, then the large one in pieces as large
    attachments are streamed (order varied by pid so the processes collide on different
    blobs)."""
    order = SMALL[os.getpid() % len(SMALL):] + SMALL[:os.getpid() % len(SMALL)]
    found = [blobs.write_blob(Path(folder), data) for data in order]
    with blobs.BlobWriter(Path(folder)) as writer:
        for start in range(0, len(LARGE), 64 * 1024):
            writer.write(LARGE[start:start + 64 * 1024])
        found.append(writer.commit())
    return found


def make_key(folder: str) -> bytes:
    return Bridge._generated_secret(SimpleNamespace(data_dir=Path(folder), _link_key=None))  # type: ignore[arg-type]


def processes() -> ProcessPoolExecutor:
    # Forked: the workers start at once, with this module's data already in memory.
    return ProcessPoolExecutor(WRITERS, mp_context=multiprocessing.get_context("fork"))


def test_runners_writing_the_same_blobs_at_once_leave_one_whole_file_each(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "attachments"
    digest = hashlib.sha256(LARGE).hexdigest()
    large = folder / digest[:2] / digest
    torn: list[int] = []
    stop = threading.Event()

    def read_while_written() -> None:
        # A reader on another runner: the file is either absent or whole, never partial.
        while not stop.is_set():
            try:
                size = len(large.read_bytes())
            except FileNotFoundError:
                continue
            if size != len(LARGE):
                torn.append(size)

    reader = threading.Thread(target=read_while_written)
    reader.start()
    try:
        with processes() as pool:
            results = list(pool.map(write_all, [str(folder)] * WRITERS))
    finally:
        stop.set()
        reader.join()
    assert torn == []
    for data in [*SMALL, LARGE]:
        location = f"{hashlib.sha256(data).hexdigest()[:2]}/{hashlib.sha256(data).hexdigest()}"
        assert all(location in found for found in results)
        assert blobs.blob_path(folder, location).read_bytes() == data
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert len(files) == len(SMALL) + 1  # no temporary file left behind
    assert not [p for p in files if p.name.startswith(".tmp-")]


def test_runners_making_the_link_key_at_once_agree_on_one(tmp_path: Path) -> None:
    for round_ in range(5):
        folder = tmp_path / f"data-{round_}"
        with processes() as pool:
            keys = list(pool.map(make_key, [str(folder)] * WRITERS))
        assert len(set(keys)) == 1 and len(keys[0]) == 64
        assert [p.name for p in folder.iterdir()] == ["link.key"]
        assert oct((folder / "link.key").stat().st_mode & 0o777) == "0o600"
