"""The bridge's HTTP face: health, metrics, the handoff API, CRM webhooks, the session view,
and every route plugins contribute. Served by uvicorn inside the runner's task group."""

from __future__ import annotations

import contextlib
import hmac
import html
import logging
import socket
from typing import TYPE_CHECKING, Any

import anyio
import uvicorn
from anyio.abc import TaskStatus
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from . import deliveries
from .api_json import session_document
from .dashboard import dashboard_routes
from .errors import CasebridgeError, WebhookRefused
from .jobs import CloseJob, HandoffJob
from .json_input import JsonInputError, loads
from .links import verify_session_link
from .logs import log_context, new_trace_id
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import render as render_metrics
from .model import Session, SessionStatus, WebhookRequest, utcnow

if TYPE_CHECKING:
    from .bridge import Bridge

log = logging.getLogger(__name__)


class BodyTooLarge(CasebridgeError):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body of {declared} bytes is over the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body is over the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


class Routes:
    """The bridge's own routes, each a method on the runner it serves."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge
        self.limit = bridge.config.http.max_body_bytes

    def routes(self) -> list[Any]:
        return [
            Route("/healthz", self.healthz),
            Route("/readyz", self.readyz),
            Route("/metrics", self.metrics),
            Route("/api/sessions/{session_id}", self.session_json),
            Route("/api/sessions/{session_id}/handoff", self.handoff, methods=["POST"]),
            Route("/api/sessions/{session_id}/close", self.close, methods=["POST"]),
            Route("/webhooks/{crm}/{token}", self.webhook, methods=["POST"]),
            Route("/sessions/{session_id}", self.session_page),
        ]

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(self, request: Request) -> Response:
        try:
            await self.bridge.store.ping()
        except Exception as exc:
            return JSONResponse({"ready": False, "store": str(exc)}, status_code=503)
        return JSONResponse({"ready": True, "plugins": self.bridge.plugin_names()})

    async def metrics(self, request: Request) -> Response:
        return Response(render_metrics(self.bridge.registry), media_type=METRICS_CONTENT_TYPE)

    # -- the session API ------------------------------------------------------------------

    def refused(self, request: Request) -> Response | None:
        """The answer to an API call without the bearer token, or None when it has it."""
        token = self.bridge.config.http.api_token
        if not token:
            return JSONResponse({"error": "the session API is off: set [http] api_token"}, 403)
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.reveal().encode()):
            log.warning("session API call with a wrong or missing token refused")
            return JSONResponse({"error": "missing or wrong bearer token"}, 401)
        return None

    async def open_session(self, request: Request) -> Response | Session:
        """The session the path names, or the answer when there is none open."""
        session_id = request.path_params["session_id"]
        session = await self.bridge.store.get_session(session_id)
        if session is None:
            return JSONResponse({"error": f"no session {session_id}"}, 404)
        if session.status is SessionStatus.CLOSED:
            return JSONResponse({"error": f"session {session_id} is closed"}, 409)
        return session

    async def handoff(self, request: Request) -> Response:
        if (answer := self.refused(request)) is not None:
            return answer
        try:
            body = await read_body(request, self.limit)
            reason = _reason(body)
        except (BodyTooLarge, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, 400 if isinstance(exc, ValueError) else 413)
        session = await self.open_session(request)
        if not isinstance(session, Session):
            return session
        await self.bridge.enqueue(
            HandoffJob(session.id, reason, "api", new_trace_id()).to_new_job())
        return JSONResponse({"session": session.id, "handoff": "queued"}, 202)

    async def close(self, request: Request) -> Response:
        if (answer := self.refused(request)) is not None:
            return answer
        session = await self.open_session(request)
        if not isinstance(session, Session):
            return session
        await self.bridge.enqueue(CloseJob(session.id, new_trace_id()).to_new_job())
        return JSONResponse({"session": session.id, "close": "queued"}, 202)

    async def session_json(self, request: Request) -> Response:
        if (answer := self.refused(request)) is not None:
            return answer
        session_id = request.path_params["session_id"]
        session = await self.bridge.store.get_session(session_id)
        if session is None:
            return JSONResponse({"error": f"no session {session_id}"}, 404)
        transcript = await self.bridge.store.transcript(session.id)
        states = await deliveries.for_transcript(self.bridge.store, transcript)
        return JSONResponse(session_document(session, transcript, states))

    # -- the CRM's webhook and the rep's session page -------------------------------------

    async def webhook(self, request: Request) -> Response:
        crm = request.path_params["crm"]
        if crm != self.bridge.config.bridge.crm:
            return JSONResponse({"error": "not found"}, 404)
        try:
            body = await read_body(request, self.limit)
        except BodyTooLarge as exc:
            return JSONResponse({"error": str(exc)}, 413)
        trace_id = new_trace_id()
        with log_context(trace_id=trace_id):
            call = WebhookRequest(
                path_token=request.path_params["token"], headers=dict(request.headers),
                body=body, remote=request.client.host if request.client else "",
            )
            try:
                events = await self.bridge.hooks.read_webhook(crm, call)
            except WebhookRefused as exc:
                log.warning("%s webhook refused: %s", crm, exc)
                return JSONResponse({"error": str(exc)}, exc.status)
            # Each call is its own closure event: a case reopened and closed again closes
            # its sessions again.
            accepted = await self.bridge.report_crm_events(events, trace_id=trace_id,
                                                           event_id=trace_id)
            return JSONResponse({"accepted": accepted})

    async def session_page(self, request: Request) -> Response:
        bridge = self.bridge
        session_id = request.path_params["session_id"]
        try:
            verify_session_link(
                session_id, request.query_params.get("exp", ""),
                request.query_params.get("sig", ""), bridge.link_secret, now=utcnow(),
            )
        except CasebridgeError as exc:
            return HTMLResponse(f"<h1>Link not valid</h1><p>{html.escape(str(exc))}</p>", 403)
        session = await bridge.store.get_session(session_id)
        if session is None:
            return HTMLResponse("<h1>No such session</h1>", 404)
        transcript = await bridge.store.transcript(session_id)
        states = await deliveries.for_transcript(bridge.store, transcript)
        page = bridge.templates.session_page(
            session, transcript, session.case.url if session.case else None, utcnow(), states
        )
        return HTMLResponse(page, headers={"Cache-Control": "no-store",
                                           "Referrer-Policy": "no-referrer"})


def create_app(bridge: Bridge) -> Starlette:
    """The bridge's web app: plugin routes first (a plugin's /webhooks/<name>/... must not
    fall to the CRM route), then the bridge's own, then the dashboard."""
    routes: list[Any] = [
        *bridge.hooks.http_routes(),
        *Routes(bridge).routes(),
        *dashboard_routes(bridge),
    ]
    app = Starlette(routes=routes)
    app.state.bridge = bridge
    return app


def _reason(body: bytes) -> str:
    if not body.strip():
        return "handed off through the API"
    try:
        data = loads(body)
    except JsonInputError as exc:
        raise ValueError(f'{exc}; expected JSON like {{"reason": "..."}}') from None
    reason = data.get("reason") if isinstance(data, dict) else None
    if reason is not None and not isinstance(reason, str):
        raise ValueError("'reason' must be a string")
    return reason or "handed off through the API"


class _Server(uvicorn.Server):
    # The runner owns signals (and stops by cancellation); uvicorn must not take them.
    def capture_signals(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; raises OSError naming the address when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(512)
    sock.setblocking(False)
    return sock


async def serve(
    app: Starlette, host: str, port: int,
    *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run uvicorn on the current event loop until cancelled; reports the bound port."""
    sock = bind(host, port)
    config = uvicorn.Config(app, log_config=None, lifespan="off", access_log=False)
    server = _Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
            await anyio.sleep(0.01)
        task_status.started(sock.getsockname()[1])
        try:
            await anyio.sleep_forever()
        finally:
            server.should_exit = True
