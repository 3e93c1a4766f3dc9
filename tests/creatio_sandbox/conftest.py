"""Fixtures: a real sandbox server on a loopback port, clients logged in both ways, and a
tiny webhook receiver standing in for casebridge's reply endpoint."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from casebridge_creatio.sandbox import Sandbox, SandboxSettings, create_sandbox_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class Served:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        # Stopping takes uvicorn a tick; let servers wind down together at the session end.
        self.server.should_exit = True
        _stopping.append(self)


_stopping: list[Served] = []


@pytest.fixture(scope="session", autouse=True)
def _join_stopped_servers() -> Iterator[None]:
    yield
    for served in _stopping:
        served.thread.join(10)


def serve(app: Any) -> Served:
    """Run an ASGI app with uvicorn on 127.0.0.1 and a free port, in a thread."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical",
                            lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return Served(f"http://127.0.0.1:{port}", server, thread)


@dataclass
class RunningSandbox:
    url: str
    sandbox: Sandbox
    settings: SandboxSettings

    @property
    def odata(self) -> str:
        return self.url + self.settings.odata_root

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)

    def login(self, user: str = "Supervisor", password: str = "Supervisor") -> httpx.Client:
        """A client with the session cookies and the BPMCSRF header, as Creatio clients do."""
        client = self.client()
        answer = client.post("/ServiceModel/AuthService.svc/Login",
                             json={"UserName": user, "UserPassword": password},
                             headers={"ForceUseSession": "true"})
        assert answer.json()["Code"] == 0, answer.text
        client.headers["BPMCSRF"] = client.cookies["BPMCSRF"]
        client.headers["ForceUseSession"] = "true"
        return client

    def bearer(self) -> httpx.Client:
        client = self.client()
        token = client.post(self.settings.token_path, data={
            "client_id": "casebridge-sandbox", "client_secret": "sandbox-secret",
            "grant_type": "client_credentials"}).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        return client


StartSandbox = Callable[..., RunningSandbox]


@pytest.fixture
def start_sandbox() -> Iterator[StartSandbox]:
    """Start sandboxes (settings as keyword arguments); all stop at the end of the test."""
    running: list[Served] = []

    def start(**kwargs: Any) -> RunningSandbox:
        settings = SandboxSettings(**kwargs)
        app = create_sandbox_app(settings)
        served = serve(app)
        running.append(served)
        return RunningSandbox(served.url, app.state.sandbox, settings)

    yield start
    for served in running:
        served.stop()


@pytest.fixture
def sandbox(start_sandbox: StartSandbox) -> RunningSandbox:
    return start_sandbox()


@pytest.fixture
def session(sandbox: RunningSandbox) -> Iterator[httpx.Client]:
    client = sandbox.login()
    yield client
    client.close()


@dataclass
class Receiver:
    """Records every POST it gets; answers with the next status in ``statuses`` (else 200)."""

    url: str = ""
    posts: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 10) -> list[tuple[dict[str, str], Any]]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.posts) >= count, timeout)
        assert len(self.posts) >= count, f"only {len(self.posts)} of {count} webhook posts"
        return list(self.posts)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    async def hook(request: Request) -> JSONResponse:
        body = await request.json()
        status = rec.statuses.pop(0) if rec.statuses else 200
        with rec.arrived:
            rec.posts.append((dict(request.headers), body))
            rec.arrived.notify_all()
        return JSONResponse({"ok": status < 300}, status)

    served = serve(Starlette(routes=[Route("/hook", hook, methods=["POST"])]))
    rec.url = served.url + "/hook"
    yield rec
    served.stop()
