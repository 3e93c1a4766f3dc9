"""The runner: plugins' services and HTTP routes start in one task group on real ports."""

from __future__ import annotations

import socket

import anyio
import httpx
from casebridge import hookimpl
from casebridge.bridge import Bridge
from casebridge.contributions import Service
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from support.bridges import install_jsonl, write_config
from support.plugins import LoopChannel


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Extras:
    def __init__(self) -> None:
        self.events: list[str] = []

    @hookimpl
    def configure(self, context):
        self.context = context

    @hookimpl
    def services(self):
        async def ticker(task_status) -> None:
            self.events.append("started")
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self.events.append("stopped")

        return [Service("ticker", ticker)]

    @hookimpl
    def http_routes(self):
        async def hello(request):
            return PlainTextResponse(f"hello from {self.context.name}")

        return [Route("/extras/hello", hello)]


async def test_hook_services_and_test_hook_http_routes_run_in_the_runner(
    tmp_path, monkeypatch
) -> None:
    install_jsonl(monkeypatch, tmp_path)
    port = free_port()
    path = write_config(tmp_path, bridge={"plugins": ["extras"]},
                        http={"host": "127.0.0.1", "port": port})
    extras = Extras()
    bridge = Bridge.from_config(path, plugins={"loop": LoopChannel(), "extras": extras})
    async with anyio.create_task_group() as tg:
        await tg.start(bridge.run)
        assert extras.events == ["started"]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/extras/hello")).text == "hello from extras"
            assert (await client.get("/healthz")).text == "ok"
        tg.cancel_scope.cancel()
    assert extras.events == ["started", "stopped"]


def test_hook_http_routes_and_services_of_disabled_plugins_stay_off(tmp_path, monkeypatch):
    install_jsonl(monkeypatch, tmp_path)
    path = write_config(tmp_path)
    bridge = Bridge.from_config(path, plugins={"loop": LoopChannel()})
    assert bridge.hooks.services() == []
    assert bridge.hooks.http_routes() == []
