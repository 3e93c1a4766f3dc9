"""The mail catcher's pages on the bridge's HTTP server: ``/mail`` lists the kept messages,
``/mail/{id}`` shows one (headers, threading headers, text and HTML parts), ``/mail/{id}/raw``
its source, ``/mail/messages.json`` the list as JSON for scripts and tests.

A developer's tool, on only when ``[plugins.email.catcher]`` is set; like the sandboxes' pages
it needs no login. Every value is escaped by Jinja; the HTML part is sanitized with the
channel's one sanitizer and then shown in an iframe sandboxed with no permissions, so a
hostile reply body can neither run script nor reach the page around it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from casebridge.plugin import sanitize_html
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from .catcher import CatcherStore, CaughtMail, describe

TEMPLATES = Path(__file__).parent / "templates" / "catcher"
PREFIX = "/mail"
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def catcher_routes(store: CatcherStore, smtp_address: str) -> list[BaseRoute]:
    """The catcher's routes over ``store``; ``smtp_address`` ("host:port") is shown on the
    list page so a developer knows where to point other mail."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )

    def summary(mail: CaughtMail) -> dict[str, Any]:
        view = describe(mail.data)
        return {
            "id": mail.id,
            "mail_from": mail.mail_from,
            "rcpt_tos": list(mail.rcpt_tos),
            "received_at": mail.received_at.isoformat(),
            "subject": view.subject,
            "from": view.from_,
            "to": view.to,
            "thread": dict(view.thread),
        }

    async def listing(request: Request) -> Response:
        mails = await anyio.to_thread.run_sync(store.all)
        page = env.get_template("list.html").render(
            mails=[summary(m) for m in mails], smtp_address=smtp_address
        )
        return HTMLResponse(page, headers=_HEADERS)

    async def as_json(request: Request) -> Response:
        mails = await anyio.to_thread.run_sync(store.all)
        return JSONResponse({"messages": [summary(m) for m in mails]}, headers=_HEADERS)

    async def one(request: Request) -> Response:
        mail = await anyio.to_thread.run_sync(store.get, request.path_params["mail_id"])
        if mail is None:
            return HTMLResponse("<h1>No such message</h1>", 404)
        view = describe(mail.data)
        page = env.get_template("message.html").render(
            mail=mail, view=view, html=sanitize_html(view.html) if view.html else ""
        )
        return HTMLResponse(page, headers=_HEADERS)

    async def raw(request: Request) -> Response:
        mail = await anyio.to_thread.run_sync(store.get, request.path_params["mail_id"])
        if mail is None:
            return PlainTextResponse("no such message", 404)
        return PlainTextResponse(mail.data.decode("utf-8", "replace"), headers=_HEADERS)

    return [
        Route(PREFIX, listing, methods=["GET"]),
        Route(f"{PREFIX}/messages.json", as_json, methods=["GET"]),
        Route(f"{PREFIX}/{{mail_id}}", one, methods=["GET"]),
        Route(f"{PREFIX}/{{mail_id}}/raw", raw, methods=["GET"]),
    ]
