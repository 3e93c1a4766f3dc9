"""Closing a connection without answering, for the "dropped connection" fault.

An endpoint raises :class:`DropConnection`; :class:`DropConnectionMiddleware` (installed
inside Starlette's error middleware, so the exception never becomes a 500) closes the
socket and waits for the server to notice, so the client sees the connection end with no
response at all — what a crashed proxy or a network cut looks like.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class DropConnection(Exception):
    """Raised by an endpoint to have the connection closed without a response."""


class DropConnectionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except DropConnection:
            if started:
                raise
            await _drop(receive, send)


async def _drop(receive: Receive, send: Send) -> None:
    # uvicorn hands each request a bound ``receive`` of its request cycle, which holds the
    # socket's transport: closing it ends the connection before any byte of an answer.
    cycle: Any = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not hasattr(transport, "close"):
        # Another server: promise a body and never send it, which the client sees as a
        # connection closed mid-answer.
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"1")]})
        raise DropConnection("connection dropped")
    transport.close()
    with anyio.move_on_after(5):
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
