"""The sandbox as a Starlette app: AuthService, OAuth token, OData 4, ``$batch``,
FileApiService, the admin endpoints and the case pages."""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote as url_quote

import anyio
from casebridge.plugin import JsonInputError
from casebridge.plugin import read_json as loads
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from . import faults as fault_kinds
from .auth import CSRF_COOKIE, SESSION_COOKIE, Authenticator, AuthError, Caller
from .batch import parse_batch, run_batch, without_id
from .drop import DropConnection, DropConnectionMiddleware
from .engine import ODataEngine, Reply
from .errors import ODataError, error_body
from .faults import FaultPlan, faults_from_json
from .files import FileService, UploadError
from .pages import page_routes
from .processes import ProcessRunner
from .seed import SUPERVISOR_CONTACT, seed_rows
from .settings import SandboxSettings
from .store import Store

log = logging.getLogger(__name__)
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE", "MERGE"})
ODATA_CONTENT_TYPE = "application/json; odata.metadata=minimal; odata.streaming=true"
AUTH_PATH = "/ServiceModel/AuthService.svc"


@dataclass(slots=True)
class Sandbox:
    """Everything the running sandbox holds; ``app.state.sandbox`` in tests."""

    settings: SandboxSettings
    store: Store
    engine: ODataEngine
    auth: Authenticator
    faults: FaultPlan
    processes: ProcessRunner
    files: FileService
    requests: Counter[str] = field(default_factory=Counter)
    batch_operations: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)

    def reset(self) -> None:
        """Back to a fresh sandbox: seed data only, no sessions, configured faults, zero
        counters."""
        self.store.clear()
        self.engine.seed(seed_rows(), SUPERVISOR_CONTACT)
        self.auth.clear()
        self.faults.configure(self.settings.faults)
        self.files.received.clear()
        self.files.mime_types.clear()
        self.requests.clear()
        self.batch_operations.clear()
        self.injected.clear()

    def publish(self) -> None:
        """Hand the events of committed writes to the business processes."""
        events, self.engine.pending_events = self.engine.pending_events, []
        self.processes.publish(events)

    def stats(self) -> dict[str, Any]:
        return {"requests": sum(self.requests.values()), "by_route": dict(self.requests),
                "batch_operations": dict(self.batch_operations),
                "faults_injected": dict(self.injected)}


def build_sandbox(settings: SandboxSettings) -> Sandbox:
    store = Store(settings.database)
    engine = ODataEngine(store)
    sandbox = Sandbox(settings, store, engine, Authenticator(settings),
                      FaultPlan(settings.faults), ProcessRunner(settings), FileService(engine))
    if store.is_empty():
        engine.seed(seed_rows(), SUPERVISOR_CONTACT)
    return sandbox


def create_sandbox_app(settings: SandboxSettings) -> Starlette:
    """The sandbox server. Serve it with uvicorn; ``app.state.sandbox`` is its
    :class:`Sandbox`. Business-process webhooks are delivered while the app's lifespan runs."""
    sandbox = build_sandbox(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sandbox.processes.run)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
        sandbox.store.close()

    app = Starlette(routes=_routes(sandbox), lifespan=lifespan,
                    middleware=[Middleware(DropConnectionMiddleware)])
    app.state.sandbox = sandbox
    return app


def _routes(sandbox: Sandbox) -> list[BaseRoute]:
    s = sandbox.settings
    api = _Api(sandbox)
    all_methods = ["GET", "POST", "PATCH", "PUT", "DELETE", "MERGE"]
    return [
        Route(f"{AUTH_PATH}/Login", api.login, methods=["POST"]),
        Route(f"{AUTH_PATH}/Logout", api.logout, methods=["POST"]),
        Route(s.token_path, api.token, methods=["POST"]),
        Route(f"{s.odata_root}/$batch", api.batch, methods=["POST"]),
        Route(s.odata_root, api.odata, methods=all_methods),
        Route(f"{s.odata_root}/{{resource:path}}", api.odata, methods=all_methods),
        Route(f"{s.rest_root}/FileApiService/UploadFile", api.upload, methods=["POST"]),
        Route(f"{s.rest_root}/FileService/Download/{{entity}}/{{file_id}}", api.download,
              methods=["GET"]),
        Route("/sandbox/admin/faults", api.get_faults, methods=["GET"]),
        Route("/sandbox/admin/faults", api.set_faults, methods=["POST"]),
        Route("/sandbox/admin/reset", api.reset, methods=["POST"]),
        Route("/sandbox/admin/stats", api.stats, methods=["GET"]),
        Route("/sandbox/admin/webhooks", api.webhooks, methods=["GET"]),
        *page_routes(sandbox),
    ]


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status, headers,
                    media_type=ODATA_CONTENT_TYPE)


def _reply(reply: Reply) -> Response:
    if isinstance(reply.body, bytes):
        return Response(reply.body, reply.status, reply.headers)
    if reply.body is None:
        return Response(status_code=reply.status, headers=reply.headers)
    return _json(reply.status, reply.body, reply.headers)


class _Api:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.settings = sandbox.settings

    # --- the fault and authentication gate every API request goes through ---

    async def _guarded(self, request: Request, route: str, *, needs_auth: bool,
                       handler: Callable[[Caller | None], Awaitable[Response]]) -> Response:
        sb = self.sandbox
        sb.requests[route] += 1
        is_write = request.method in WRITE_METHODS
        plan = sb.faults.settings
        if plan.latency_ms:
            await anyio.sleep(plan.latency_ms / 1000)
        has_credentials = bool(request.headers.get("authorization")
                               or request.cookies.get(SESSION_COOKIE))
        fate = sb.faults.draw(is_write=is_write, authenticated=needs_auth and has_credentials)
        if fate.before != fault_kinds.OK:
            sb.injected[fate.before] += 1
        if fate.before == fault_kinds.DROP:
            raise DropConnection(route)
        if fate.before == fault_kinds.THROTTLE:
            return _json(429, error_body("Too many requests.", code="TooManyRequests"),
                         {"Retry-After": str(plan.retry_after_s)})
        if fate.before == fault_kinds.ERROR:
            return _json(500, error_body("An unexpected error occurred (injected by the "
                                         "sandbox).", code="InternalServerError"))
        caller: Caller | None = None
        if needs_auth:
            try:
                caller = sb.auth.authenticate(request.headers, request.cookies, write=is_write)
            except AuthError as exc:
                return _json(401, error_body(str(exc), code="Unauthorized"))
            if fate.before == fault_kinds.EXPIRE:
                sb.auth.expire(caller)
                return _json(401, error_body("The session has expired: log in again.",
                                             code="Unauthorized"))
        response = await handler(caller)
        if fate.after_write and is_write and response.status_code < 300:
            sb.injected[f"{fate.after_write} after write"] += 1
            if fate.after_write == "drop":
                raise DropConnection(route)
            return _json(500, error_body("An unexpected error occurred after the change was "
                                         "saved (injected by the sandbox).",
                                         code="InternalServerError"))
        return response

    def _service_root(self, request: Request) -> str:
        return str(request.base_url).rstrip("/") + self.settings.odata_root

    # --- AuthService and OAuth ---

    async def login(self, request: Request) -> Response:
        async def handle(_: Caller | None) -> Response:
            try:
                data = loads(await request.body())
                name, password = data["UserName"], data["UserPassword"]
                if not isinstance(name, str) or not isinstance(password, str):
                    raise TypeError
            except (ValueError, KeyError, TypeError):
                return _login_answer(1, "The request must be JSON with UserName and "
                                     "UserPassword.", status=400)
            session = self.sandbox.auth.login(name, password)
            if session is None:
                return _login_answer(1, "Either user name or password is incorrect.")
            key, sess = session
            response = _login_answer(0, "")
            response.set_cookie(SESSION_COOKIE, key, path="/", httponly=True)
            response.set_cookie("BPMLOADER", sess.loader, path="/", httponly=True)
            response.set_cookie(CSRF_COOKIE, sess.csrf, path="/")
            response.set_cookie("UserName", url_quote(sess.user.name), path="/")
            response.set_cookie("BPMSESSIONID", sess.session_id, path="/", httponly=True)
            return response

        return await self._guarded(request, "POST Login", needs_auth=False, handler=handle)

    async def logout(self, request: Request) -> Response:
        async def handle(caller: Caller | None) -> Response:
            if caller is not None and caller.session_key:
                self.sandbox.auth.logout(caller.session_key)
            response = Response(status_code=200)
            for name in (SESSION_COOKIE, "BPMLOADER", CSRF_COOKIE, "UserName", "BPMSESSIONID"):
                response.delete_cookie(name, path="/")
            return response

        return await self._guarded(request, "POST Logout", needs_auth=True, handler=handle)

    async def token(self, request: Request) -> Response:
        async def handle(_: Caller | None) -> Response:
            form = await request.form()
            grant = str(form.get("grant_type", ""))
            if grant != "client_credentials":
                return JSONResponse({"error": "unsupported_grant_type"}, 400)
            issued = self.sandbox.auth.issue_token(str(form.get("client_id", "")),
                                                   str(form.get("client_secret", "")))
            if issued is None:
                return JSONResponse({"error": "invalid_client"}, 400)
            token, lifetime = issued
            return JSONResponse({"access_token": token, "expires_in": lifetime,
                                 "token_type": "Bearer", "scope": "ApplicationAccess"},
                                headers={"Cache-Control": "no-store"})

        return await self._guarded(request, "POST token", needs_auth=False, handler=handle)

    # --- OData ---

    async def odata(self, request: Request) -> Response:
        resource = request.path_params.get("resource", "")
        entity = resource.split("(", 1)[0].split("/", 1)[0] or "(root)"

        async def handle(caller: Caller | None) -> Response:
            assert caller is not None
            body = await request.body() if request.method in WRITE_METHODS else None
            if request.method == "POST" and self.sandbox.faults.settings.ignore_client_ids:
                stripped = without_id(body)
                body = body if stripped is body else json.dumps(stripped).encode()
            engine = self.sandbox.engine
            reply = engine.handle(request.method, resource, dict(request.query_params), body,
                                  actor=caller.user.contact_id,
                                  service_root=self._service_root(request))
            self.sandbox.store.forget_journal()
            self.sandbox.publish()
            return _reply(reply)

        return await self._guarded(request, f"{request.method} {entity}", needs_auth=True,
                                   handler=handle)

    async def batch(self, request: Request) -> Response:
        async def handle(caller: Caller | None) -> Response:
            assert caller is not None
            try:
                items = parse_batch(loads(await request.body(), what="The batch body"))
            except JsonInputError as exc:
                return _json(400, error_body(f"{exc}.", code="BadRequest"))
            except ODataError as exc:
                return _json(exc.status, exc.body())
            plan = self.sandbox.faults.settings
            if plan.refuse_atomicity_groups and any(item.group for item in items):
                return _json(400, error_body("This server does not support atomicityGroup in "
                                             "a batch.", code="NotSupported"))
            prefer = request.headers.get("prefer", "").lower()
            for item in items:
                name = item.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1].split("(", 1)[0]
                self.sandbox.batch_operations[f"{item.method} {name}"] += 1
            responses = run_batch(self.sandbox.engine, items,
                                  continue_on_error="continue-on-error" in prefer,
                                  actor=caller.user.contact_id,
                                  service_root=self._service_root(request),
                                  odata_root=self.settings.odata_root,
                                  ignore_client_ids=plan.ignore_client_ids)
            self.sandbox.publish()
            return _json(200, {"responses": responses})

        return await self._guarded(request, "POST $batch", needs_auth=True, handler=handle)

    # --- files ---

    async def upload(self, request: Request) -> Response:
        async def handle(caller: Caller | None) -> Response:
            assert caller is not None
            data = await request.body()
            try:
                answer = self.sandbox.files.upload(
                    request.query_params, request.headers.get("content-range"), data,
                    actor=caller.user.contact_id, service_root=self._service_root(request))
            except UploadError as exc:
                self.sandbox.engine.pending_events.clear()
                return JSONResponse(exc.answer(), exc.status)
            self.sandbox.publish()
            return JSONResponse(answer)

        return await self._guarded(request, "POST UploadFile", needs_auth=True, handler=handle)

    async def download(self, request: Request) -> Response:
        async def handle(_: Caller | None) -> Response:
            try:
                content, mime, name = self.sandbox.files.download(
                    request.path_params["entity"], request.path_params["file_id"])
            except ODataError as exc:
                return _json(exc.status, exc.body())
            disposition = f"attachment; filename*=UTF-8''{url_quote(name)}"
            return Response(content, media_type=mime,
                            headers={"Content-Disposition": disposition})

        return await self._guarded(request, "GET Download", needs_auth=True, handler=handle)

    # --- admin ---

    async def get_faults(self, request: Request) -> Response:
        return JSONResponse(self.sandbox.faults.as_json())

    async def set_faults(self, request: Request) -> Response:
        try:
            data = loads(await request.body() or b"{}")
            new = faults_from_json(self.sandbox.faults.settings, data)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        self.sandbox.faults.configure(new)
        return JSONResponse(self.sandbox.faults.as_json())

    async def reset(self, request: Request) -> Response:
        self.sandbox.reset()
        return JSONResponse({"reset": True})

    async def stats(self, request: Request) -> Response:
        return JSONResponse(self.sandbox.stats())

    async def webhooks(self, request: Request) -> Response:
        return JSONResponse({"deliveries": self.sandbox.processes.history_json()})


def _login_answer(code: int, message: str, *, status: int = 200) -> Response:
    return JSONResponse({"Code": code, "Message": message, "Exception": None,
                         "PasswordChangeUrl": None, "RedirectUrl": None}, status)
