"""Shared fixtures: the test support package (in-process plugins, a bridge factory)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import inspect

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every coroutine test runs under anyio (asyncio), with no per-test marker.
    for item in items:
        if inspect.iscoroutinefunction(getattr(item, "function", None)):
            item.add_marker(pytest.mark.anyio)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
