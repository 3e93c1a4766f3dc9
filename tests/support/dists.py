"""Fake installed distributions, so tests exercise real entry-point discovery."""

from __future__ import annotations

from pathlib import Path

import pytest


def write_dist(root: Path, name: str, entry_points: dict[str, str],
               version: str = "0.1.0") -> Path:
    """Write ``name``'s dist-info (with ``entry_points`` in the group ``casebridge``) into
    ``root``; putting ``root`` on sys.path makes it look pip-installed."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = ["[casebridge]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


def install_dist(
    monkeypatch: pytest.MonkeyPatch, root: Path, name: str, entry_points: dict[str, str],
    *, source: Path | None = None, version: str = "0.1.0",
) -> None:
    """Make ``name`` look pip-installed for this test; ``source`` (a folder holding the
    package) goes on sys.path too."""
    monkeypatch.syspath_prepend(str(write_dist(root, name, entry_points, version)))
    if source is not None:
        monkeypatch.syspath_prepend(str(source))
