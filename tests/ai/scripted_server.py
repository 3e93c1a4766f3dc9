"""A local OpenAI-compatible server whose answers each test scripts.

It runs uvicorn on 127.0.0.1 (a port the OS picks) in a thread with its own event loop, and
serves ``POST /v1/chat/completions`` and ``GET /v1/models``. Each completion request takes the
next scripted :class:`Reply` (or asks ``responder``); every request is recorded.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@dataclass
class Reply:
    """One scripted answer. ``body`` a dict is sent as JSON, a str as it is. ``hang`` holds
    the request open until the test ends (for timeouts); ``pause`` delays the answer."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    pause: float = 0.0


def completion(message: dict[str, Any], *, prompt: int = 20, completion_tokens: int = 7,
               finish: str = "stop") -> Reply:
    return Reply(body={
        "id": "chatcmpl-test", "object": "chat.completion", "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", **message},
                     "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
                  "total_tokens": prompt + completion_tokens},
    })


def tool_call(name: str, arguments: dict[str, Any] | str, **usage: Any) -> Reply:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return completion({"content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": name, "arguments": text}}]},
        finish="tool_calls", **usage)


def content(text: str, *, pause: float = 0.0, **usage: Any) -> Reply:
    reply = completion({"content": text}, **usage)
    reply.pause = pause
    return reply


def status(code: int, retry_after: str | None = None) -> Reply:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Reply(status=code, body={"error": {"message": f"scripted {code}"}}, headers=headers)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class ScriptedServer:
    def __init__(self) -> None:
        self.url = ""
        self.models = ["test-model"]
        self.models_status = 200
        self.requests: list[Recorded] = []
        self.unscripted = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._script: list[Reply] = []
        self.responder: Callable[[dict[str, Any]], Reply] | None = None
        self._generation = 0
        self._lock = threading.Lock()

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def reset(self) -> None:
        with self._lock:
            self._generation += 1  # releases hanging requests
            self._script.clear()
            self.requests.clear()
            self.responder = None
            self.models = ["test-model"]
            self.models_status = 200
            self.unscripted = 0
            self.max_in_flight = 0

    def completions(self) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _next(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            if self._script:
                return self._script.pop(0)
            responder = self.responder
        if responder is not None:
            return responder(body)
        with self._lock:
            self.unscripted += 1
        return status(500)

    async def _completions(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
        with self._lock:
            self.requests.append(Recorded("POST", request.url.path, dict(request.headers), body))
            generation = self._generation
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            reply = self._next(body if isinstance(body, dict) else {})
            if reply.pause:
                await asyncio.sleep(reply.pause)
            if reply.hang:
                await self._hold(generation)
        finally:
            with self._lock:
                self._in_flight -= 1
        return _response(reply)

    async def _hold(self, generation: int) -> None:
        # Released by reset() from the test's thread (at most 10 s), so no asyncio.Event.
        for _ in range(500):
            if self._generation != generation:
                return
            await asyncio.sleep(0.02)

    async def _models(self, request: Request) -> Response:
        with self._lock:
            self.requests.append(Recorded("GET", request.url.path, dict(request.headers), None))
        if self.models_status != 200:
            return JSONResponse({"error": {"message": "no such route"}}, self.models_status)
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "owned_by": "test"} for m in self.models]})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/chat/completions", self._completions, methods=["POST"]),
            Route("/v1/models", self._models, methods=["GET"]),
        ])


def _response(reply: Reply) -> Response:
    if isinstance(reply.body, str):
        return Response(reply.body, reply.status, headers=reply.headers,
                        media_type="application/json")
    return JSONResponse(reply.body, reply.status, headers=reply.headers)


@contextmanager
def running() -> Iterator[ScriptedServer]:
    """Start a :class:`ScriptedServer` on a loopback port for the block."""
    server = ScriptedServer()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(server.app(), log_level="warning", lifespan="off",
                            timeout_graceful_shutdown=1)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(uv.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the scripted AI server did not start")
        time.sleep(0.01)
    server.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield server
    finally:
        server.reset()
        uv.should_exit = True
        thread.join(10)
        sock.close()
