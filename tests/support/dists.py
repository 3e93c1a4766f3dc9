"""Fake installed distributions, so tests exercise real entry-point discovery."""

from __future__ import annotations

from pathlib import Path

import pytest


def install_dist(
    monkeypatch: pytest.MonkeyPatch, root: Path, name: str, entry_points: dict[str, str],
    *, source: Path | None = None, version: str = "0.1.0",
) -> None:
    """Make ``name`` look pip-installed with ``entry_points`` in the group ``casebridge``;
    ``source`` (a folder holding the package) goes on sys.path too."""
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = ["[casebridge]", *(f"{k} = {v}" for k, v in entry_points.items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(root))
    if source is not None:
        monkeypatch.syspath_prepend(str(source))
