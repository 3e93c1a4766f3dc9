"""A real runner for the Creatio plugin tests: a Bridge (SQLite store, real plugin manager,
the creatio plugin by its entry point, the loopback channel in-process) running with its
HTTP server on a free loopback port and the in-process Creatio sandbox."""

from __future__ import annotations

import itertools
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import tomli_w
from casebridge.bridge import Bridge
from casebridge.model import SessionStatus
from casebridge_creatio.plugin import CreatioPlugin
from casebridge_creatio.sandbox import Sandbox
from casebridge_creatio.sandbox import seed as sandbox_seed
from support.plugins import LoopChannel

API_TOKEN = "api-token"
ACTIVITY_TYPE_EMAIL = sandbox_seed.ACTIVITY_TYPE_EMAIL
MESSAGE_OUTGOING = sandbox_seed.MESSAGE_OUTGOING
ACTIVITY_STATUS_COMPLETED = sandbox_seed.ACTIVITY_STATUS_COMPLETED


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Return once ``predicate()`` holds; fail after 10 seconds (a hang guard)."""
    with anyio.fail_after(10):
        for _ in itertools.count():
            if predicate():
                return
            await anyio.sleep(0.02)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def creatio_config(root: Path, creatio: dict[str, Any], **sections: dict[str, Any]) -> Path:
    """A TOML with ``crm = "creatio"``, the loop channel, quick outbox retries, and ``creatio`` as
    ``[plugins.creatio]``."""
    config: dict[str, Any] = {
        "bridge": {"crm": "creatio", "channels": ["loop"], "data_dir": "data",
                   "public_url": "https://bridge.example"},
        "http": {"host": "127.0.0.1", "port": free_port(), "api_token": API_TOKEN},
        "outbox": {"workers": 2, "poll_seconds": 0.05, "backoff_base": 0.01,
                   "backoff_cap": 0.05, "jitter": 0.0},
        "handoff": {"max_customer_turns": 3},
        "plugins": {"creatio": {"reconcile_interval": 0,
                                **creatio}},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "casebridge.toml"
    path.write_text(tomli_w.dumps(config))
    return path


def sandbox_settings(mode: str, **extra: Any) -> dict[str, Any]:
    """``[plugins.creatio]`` for the in-process sandbox in one auth mode."""
    return {"url": "sandbox", "auth": mode, **extra}


@dataclass
class World:
    bridge: Bridge
    plugin: CreatioPlugin
    loop: LoopChannel
    http: httpx.AsyncClient

    @property
    def sandbox(self) -> Sandbox:
        assert self.plugin.sandbox is not None
        return self.plugin.sandbox

    @property
    def sandbox_url(self) -> str:
        return self.plugin.sandbox_url

    @property
    def bridge_url(self) -> str:
        http = self.bridge.config.http
        return f"http://{http.host}:{http.port}"

    async def settle(self) -> None:
        """Wait until the sandbox's business processes have posted and the outbox is
        drained, twice: a reply job's delivery may start more work."""
        for _ in range(2):
            await self.settle_outbox()
            await self.sandbox.processes.wait_idle()
        await self.settle_outbox()

    async def settle_outbox(self) -> None:
        """Wait until no job is pending or running (the runner's own workers may hold one
        that is waiting out a Retry-After); fail after 30 seconds (a hang guard)."""
        with anyio.fail_after(30):
            for _ in itertools.count():
                await self.bridge.outbox.drain()
                counts = await self.bridge.store.job_counts()
                if not counts.get("pending") and not counts.get("running"):
                    return
                await anyio.sleep(0.05)

    def rows(self, entity: str, **where: Any) -> list[dict[str, Any]]:
        """The sandbox's rows of ``entity`` in the order they were written."""
        return [r for r in self.sandbox.store.rows(entity)
                if all(r.get(k) == v for k, v in where.items())]

    async def faults(self, **values: Any) -> None:
        answer = await self.http.post(f"{self.sandbox_url}/sandbox/admin/faults", json=values)
        answer.raise_for_status()

    async def rep_session(self) -> httpx.AsyncClient:
        """An OData client signed in to the sandbox as a rep would be (cookies + BPMCSRF)."""
        client = httpx.AsyncClient(base_url=self.sandbox_url, timeout=10)
        answer = await client.post("/ServiceModel/AuthService.svc/Login",
                                   json={"UserName": "Supervisor", "UserPassword": "Supervisor"},
                                   headers={"ForceUseSession": "true"})
        assert answer.json()["Code"] == 0, answer.text
        client.headers["BPMCSRF"] = client.cookies["BPMCSRF"]
        client.headers["ForceUseSession"] = "true"
        return client

    async def rep_odata_reply(self, case_id: str, body: str, *, html: bool = True) -> str:
        """A rep's e-mail reply added through OData; returns the activity id."""
        rep = await self.rep_session()
        try:
            now = "2030-01-01T10:00:00Z"
            answer = await rep.post("/0/odata/Activity", json={
                "Title": "Re: your case", "CaseId": case_id, "Body": body, "IsHtmlBody": html,
                "TypeId": ACTIVITY_TYPE_EMAIL, "MessageTypeId": MESSAGE_OUTGOING,
                "StatusId": ACTIVITY_STATUS_COMPLETED, "StartDate": now, "DueDate": now,
            })
            assert answer.status_code == 201, answer.text
            return str(answer.json()["Id"])
        finally:
            await rep.aclose()

    async def sessions(self, status: SessionStatus | None = None):
        return await self.bridge.store.list_sessions(status=status)


@asynccontextmanager
async def running(path: Path, name: str = "creatio") -> AsyncIterator[World]:
    """Run the bridge of ``path`` (services, HTTP, outbox) until the block ends. A ``name``
    other than "creatio" registers the Creatio plugin in-process under that name, as a
    second tenant would be."""
    loop = LoopChannel()
    given: dict[str, object] = {"loop": loop}
    if name != "creatio":
        given[name] = CreatioPlugin()
    bridge = Bridge.from_config(path, plugins=given)
    plugin = bridge.pm.get_plugin(name)
    assert isinstance(plugin, CreatioPlugin)
    async with httpx.AsyncClient(timeout=10) as http, anyio.create_task_group() as tg:
        await tg.start(bridge.run)
        if plugin.prepared is not None and plugin.settings.url == "sandbox":
            # Statuses and origins load in the background at start: counted requests start
            # after that.
            with anyio.fail_after(30):
                await plugin.prepared.wait()
        try:
            yield World(bridge, plugin, loop, http)
        finally:
            tg.cancel_scope.cancel()
