"""The scripted AI server (one per test session, reset per test) and bridges that use it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from ai_world import API_KEY, ai_table
from casebridge.bridge import Bridge
from scripted_server import ScriptedServer, running
from support.bridges import install_jsonl, write_config
from support.plugins import LoopChannel


@pytest.fixture(scope="session")
def _server() -> Iterator[ScriptedServer]:
    with running() as server:
        yield server


@pytest.fixture
def ai_server(_server: ScriptedServer) -> Iterator[ScriptedServer]:
    _server.reset()
    yield _server
    _server.reset()


@pytest.fixture
def make_bridge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ai_server: ScriptedServer
) -> Callable[..., Any]:
    """``async with make_bridge(ai=True, core={...}, **ai_settings) as (bridge, loop):`` a
    real Bridge on the loop channel and the JSON-lines CRM, with the AI plugin enabled or not;
    ``core`` adds core TOML sections."""
    from contextlib import asynccontextmanager

    install_jsonl(monkeypatch, tmp_path)
    monkeypatch.setenv("CB_TEST_AI_KEY", API_KEY)

    @asynccontextmanager
    async def make(
        ai: bool = True, core: dict[str, Any] | None = None, **settings: Any
    ) -> AsyncIterator[tuple[Bridge, LoopChannel]]:
        sections: dict[str, Any] = dict(core or {})
        if ai:
            sections["bridge"] = {"plugins": ["ai"]}
            sections["plugins"] = {"ai": ai_table(ai_server, **settings)}
        path = write_config(tmp_path, **sections)
        loop = LoopChannel()
        bridge = Bridge.from_config(path, plugins={"loop": loop})
        await bridge.open()
        try:
            yield bridge, loop
        finally:
            await bridge.close()

    return make
