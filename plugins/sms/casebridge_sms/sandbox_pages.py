"""The SMS sandbox's page: every message the bridge sent through it (with its status and
segments), every inbound pushed to the bridge, every status callback posted, and a form that
sends an inbound SMS as a customer would.

``GET /sandbox`` shows it (``GET /`` redirects there); ``POST /sandbox/send`` takes the form
and redirects back. Like the rest of the sandbox it has no login: serve it on loopback only.
Every value is escaped by Jinja's autoescape (message bodies come from customers and reps).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

if TYPE_CHECKING:
    from casebridge_sms.sandbox import SandboxState

TEMPLATES = Path(__file__).parent / "templates"
MAX_FORM_BODY = 1600


def page_routes(state: SandboxState) -> list[BaseRoute]:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )

    async def home(request: Request) -> Response:
        return RedirectResponse("/sandbox", 302)

    async def page(request: Request) -> Response:
        html = env.get_template("sms_sandbox.html").render(
            sent=list(reversed(state.messages)),
            inbound=[_inbound_row(i) for i in reversed(state.inbound)],
            callbacks=list(reversed(state.callbacks)),
            account_sid=state.account_sid,
            webhook_url=state.webhook_url or "",
            notice=request.query_params.get("notice", ""),
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def send(request: Request) -> Response:
        form = await request.form()
        values = {k: str(form.get(k, "")).strip() for k in ("from", "to", "body")}
        missing = [k for k, v in values.items() if not v]
        if missing:
            return _back(f"Fill in {', '.join(missing)}.")
        if len(values["body"]) > MAX_FORM_BODY:
            return _back(f"The text is over {MAX_FORM_BODY} characters.")
        if not state.webhook_url:
            return _back("The sandbox has no webhook URL to send to.")
        try:
            answer = await state.send_inbound(
                state.webhook_url, values["from"], values["to"], values["body"]
            )
        except httpx.HTTPError as exc:
            return _back(f"Cannot reach {state.webhook_url}: {type(exc).__name__}")
        return _back(f"Sent; the bridge answered HTTP {answer.status_code}.")

    return [
        Route("/", home, methods=["GET"]),
        Route("/sandbox", page, methods=["GET"]),
        Route("/sandbox/send", send, methods=["POST"]),
    ]


def _inbound_row(record: dict[str, Any]) -> dict[str, Any]:
    form = record.get("form", {})
    return {
        "sid": form.get("MessageSid", ""),
        "from": form.get("From", ""),
        "to": form.get("To", ""),
        "body": form.get("Body", ""),
        "status": record.get("status", ""),
    }


def _back(notice: str) -> Response:
    return RedirectResponse(f"/sandbox?{urlencode({'notice': notice})}", 303)
