"""Shared fixtures: the test support package (in-process plugins, a bridge factory)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import inspect

import pytest
from hypothesis import settings

# Property tests judge correctness, not speed: a loaded CI machine must not fail an example
# for taking longer than hypothesis's default 200 ms (speed lives in bench/).
settings.register_profile("casebridge", deadline=None)
settings.load_profile("casebridge")


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    # Every coroutine test runs under anyio (asyncio) with no per-test marker. The mark goes
    # on the function before pytest makes items of it, so parametrized tests get it too.
    if name.startswith("test") and inspect.iscoroutinefunction(obj):
        pytest.mark.anyio(obj)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
