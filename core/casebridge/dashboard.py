"""The operator's dashboard at ``GET /``: one page for the whole bridge.

It shows each plugin's ``check``, the sessions by status (each with its signed page link and,
while the assistant has it, a hand-off button), the outbox (pending, running and dead jobs
with their last error, and a replay button), the latest dropped inbounds and why, and links to
the sandboxes' pages. Server-rendered (``dashboard/page.html.j2``), no scripts.

Who may read it and how a form post is proven genuine is :mod:`casebridge.operator_auth`:

* with ``[http] api_token`` set, the bearer token, or a login form that sets a signed cookie;
* with none, only a loopback client asking for a loopback host name (README: "Dashboard");
* every post from a browser carries the per-session form token and, when the browser sends
  one, an ``Origin`` of this host; a post with the bearer token needs neither.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from . import deliveries
from .jobs import HandoffJob, session_of
from .logs import new_trace_id
from .model import CheckResult, Session, SessionStatus, utcnow
from .operator_auth import (
    CookieError,
    form_token,
    form_token_ok,
    is_loopback_client,
    is_loopback_host,
    operator_key,
    same_origin,
    sign_cookie,
    verify_cookie,
)
from .store import DroppedInbound, Job

if TYPE_CHECKING:
    from .bridge import Bridge

__all__ = ["COOKIE", "Dashboard", "dashboard_routes", "since"]

log = logging.getLogger(__name__)

COOKIE = "casebridge_operator"
COOKIE_LIFE = timedelta(hours=12)
LIST_LIMIT = 25
CHECK_TIMEOUT = 5.0
FORM_LIMIT = 4096
JOB_STATES = ("pending", "running", "dead")
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip", "via")
# What a redirect after a post may say: a fixed set, so no text is reflected from the URL.
NOTICES = {
    "replayed": "Job {job} queued again.",
    "replayed-all": "Every dead job queued again.",
    "not-dead": "Job {job} is not dead: nothing to replay.",
    "handoff": "Hand-off of session {session} queued.",
    "not-assistant": "Session {session} is not with the assistant any more.",
    "signed-out": "Signed out.",
}
HEADERS = {
    "Cache-Control": "no-store",
    # The dashboard's URLs (and the signed session links it lists) never go to another
    # site as a referrer; same-origin still lets the browser send the Origin of its posts
    # (with "no-referrer" Chromium sends "Origin: null").
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


def since(then: datetime | None, now: datetime) -> str:
    """How long ago ``then`` was, coarsely: "just now", "5 min ago", "3 h ago", "2 d ago"."""
    if then is None:
        return ""
    seconds = int((now - then).total_seconds())
    if seconds < 60:
        return "just now" if seconds > -60 else "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class Access:
    """How a request got in: ``bearer`` (no browser session), ``cookie`` or ``loopback``.

    ``nonce`` names the browser session (its form token is derived from it); ``set_cookie``
    is a cookie value to send with this answer (a loopback browser's first visit).
    """

    via: str
    nonce: str = ""
    set_cookie: str = ""


class Dashboard:
    """The dashboard's routes over one bridge."""

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    # -- access ---------------------------------------------------------------------------

    @property
    def token(self) -> str:
        configured = self.bridge.config.http.api_token
        return configured.reveal() if configured else ""

    def key(self) -> bytes:
        return operator_key(self.bridge.link_secret, self.token)

    def _cookie_nonce(self, request: Request) -> str:
        value = request.cookies.get(COOKIE, "")
        if not value:
            return ""
        try:
            return verify_cookie(value, self.key(), now=utcnow())
        except CookieError:
            return ""

    def _new_cookie(self) -> tuple[str, str]:
        nonce = secrets.token_urlsafe(24)
        return nonce, sign_cookie(self.key(), nonce, expires_at=utcnow() + COOKIE_LIFE)

    def access(self, request: Request) -> Access | Response:
        """Who is asking, or the answer for one who may not."""
        token = self.token
        if not token:
            if not self._local(request):
                return self._page("dashboard/off.html.j2", 403)
            if nonce := self._cookie_nonce(request):
                return Access("loopback", nonce)
            nonce, cookie = self._new_cookie()
            return Access("loopback", nonce, cookie)
        authorization = request.headers.get("authorization", "")
        if authorization:
            given = authorization.removeprefix("Bearer ").strip()
            if secrets.compare_digest(given.encode(), token.encode()):
                return Access("bearer")
            log.warning("dashboard request with a wrong bearer token refused")
            return self._login_page(401, error="That token is not the API token.")
        if nonce := self._cookie_nonce(request):
            return Access("cookie", nonce)
        return self._login_page(401)

    def _local(self, request: Request) -> bool:
        """A browser on this machine, straight to a bridge that listens only on loopback.

        A proxy on the same machine also connects from loopback: a forwarding header, or a
        bridge listening beyond loopback, means the request may come from anywhere."""
        client = request.client.host if request.client else ""
        headers = request.headers
        return (
            is_loopback_host(self.bridge.config.http.host)
            and is_loopback_client(client)
            and is_loopback_host(headers.get("host", ""))
            and not any(name in headers for name in FORWARDING_HEADERS)
        )

    async def _post(self, request: Request) -> Access | Response:
        """Who posted a button's form, once proven to come from the dashboard, or the
        refusal: every button's one gate."""
        access = self.access(request)
        if isinstance(access, Response):
            return access
        form = await self._form(request, access)
        return form if isinstance(form, Response) else access

    async def _form(self, request: Request, access: Access) -> dict[str, str] | Response:
        """The posted form, once proven to come from the dashboard, or the refusal."""
        if access.via != "bearer":
            origin = request.headers.get("origin")
            if origin is not None and not same_origin(origin, request.headers.get("host", "")):
                log.warning("dashboard post from another origin refused")
                return self._refusal("This form was posted from another site.", 403)
        fields = await _read_form(request)
        if fields is None:
            return self._refusal("The form is too large.", 413)
        if access.via != "bearer" and not form_token_ok(
            fields.get("csrf", ""), self.key(), access.nonce
        ):
            log.warning("dashboard post without a valid form token refused")
            return self._refusal(
                "The form token is missing or out of date: reload the dashboard and try again.", 403
            )
        return fields

    # -- pages ----------------------------------------------------------------------------

    def _page(self, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        html = self.bridge.templates.render(template, **context)
        return HTMLResponse(html, status, headers=HEADERS)

    def _login_page(self, status: int, error: str = "") -> HTMLResponse:
        return self._page("dashboard/login.html.j2", status, error=error)

    def _refusal(self, reason: str, status: int) -> HTMLResponse:
        return self._page("dashboard/refused.html.j2", status, reason=reason)

    def _redirect(self, notice: str, access: Access | None = None, **values: str) -> Response:
        answer = RedirectResponse(
            "/?" + urlencode({"notice": notice, **values}), 303, headers=HEADERS
        )
        if access is not None and access.set_cookie:
            self._set_cookie(answer, access.set_cookie)
        return answer

    def _set_cookie(self, response: Response, value: str) -> None:
        response.set_cookie(
            COOKIE,
            value,
            max_age=int(COOKIE_LIFE.total_seconds()),
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.bridge.public_url.startswith("https:"),
        )

    async def home(self, request: Request) -> Response:
        access = self.access(request)
        if isinstance(access, Response):
            return access
        context = await self.snapshot()
        notice = NOTICES.get(request.query_params.get("notice", ""), "")
        context["notice"] = notice.format(
            job=_digits(request.query_params.get("job", "")),
            session=request.query_params.get("session", "")[:36],
        )
        context["csrf"] = form_token(self.key(), access.nonce) if access.nonce else ""
        context["signed_in"] = access.via == "cookie"
        answer = self._page("dashboard/page.html.j2", **context)
        if access.set_cookie:
            self._set_cookie(answer, access.set_cookie)
        return answer

    async def login_form(self, request: Request) -> Response:
        if not self.token:
            return RedirectResponse("/", 303)
        return self._login_page(200)

    async def login(self, request: Request) -> Response:
        if not self.token:
            return RedirectResponse("/", 303)
        origin = request.headers.get("origin")
        if origin is not None and not same_origin(origin, request.headers.get("host", "")):
            return self._refusal("This form was posted from another site.", 403)
        fields = await _read_form(request)
        if fields is None:
            return self._refusal("The form is too large.", 413)
        given = fields.get("token", "").strip()
        if not secrets.compare_digest(given.encode(), self.token.encode()):
            log.warning("dashboard sign-in with a wrong token refused")
            return self._login_page(401, error="That token is not the API token.")
        _, cookie = self._new_cookie()
        answer = RedirectResponse("/", 303, headers=HEADERS)
        self._set_cookie(answer, cookie)
        return answer

    async def logout(self, request: Request) -> Response:
        access = await self._post(request)
        if isinstance(access, Response):
            return access
        answer = self._redirect("signed-out")
        answer.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return answer

    # -- actions --------------------------------------------------------------------------

    async def replay(self, request: Request) -> Response:
        access = await self._post(request)
        if isinstance(access, Response):
            return access
        job_id = request.path_params.get("job_id")
        count = await self.bridge.store.replay_dead([job_id] if job_id is not None else None)
        if count:
            self.bridge.outbox.wake()
            log.info("dashboard: %s dead job(s) queued again", count)
        if job_id is None:
            return self._redirect("replayed-all", access)
        return self._redirect("replayed" if count else "not-dead", access, job=str(job_id))

    async def handoff(self, request: Request) -> Response:
        access = await self._post(request)
        if isinstance(access, Response):
            return access
        session = await self.bridge.store.get_session(request.path_params["session_id"])
        if session is None:
            return self._refusal("There is no such session.", 404)
        if session.status is not SessionStatus.ASSISTANT:
            return self._redirect("not-assistant", access, session=session.id)
        await self.bridge.enqueue(HandoffJob(
            session.id, "handed off from the dashboard", "dashboard", new_trace_id(),
        ).to_new_job())
        log.info("dashboard: hand-off of session %s queued", session.id)
        return self._redirect("handoff", access, session=session.id)

    # -- what the page shows --------------------------------------------------------------

    async def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, read now."""
        store, now = self.bridge.store, utcnow()
        sessions = {}
        for status in SessionStatus:
            rows = await store.list_sessions(status=status, limit=LIST_LIMIT)
            sessions[status.value] = {
                "count": await store.count_sessions(status),
                "rows": [{**self._session_row(s, now), "reply": await self._last_reply(s)}
                         for s in rows],
            }
        jobs = {
            state: [_job_row(j, now) for j in await store.list_jobs(state, LIST_LIMIT)]
            for state in JOB_STATES
        }
        return {
            "checks": await self.checks(),
            "sessions": sessions,
            "jobs": jobs,
            "job_counts": await store.job_counts(),
            "dropped": [_dropped_row(d, now) for d in await store.list_dropped(LIST_LIMIT)],
            "sandboxes": self.sandboxes(),
            "now": now,
        }

    async def checks(self) -> list[CheckResult]:
        """Every plugin's check, run side by side, each given ``CHECK_TIMEOUT`` seconds."""
        names = self.bridge.plugin_names()
        results: dict[str, CheckResult] = {}

        async def one(name: str) -> None:
            try:
                with anyio.fail_after(CHECK_TIMEOUT):
                    results[name] = await self.bridge.hooks.check(name)
            except TimeoutError:
                results[name] = CheckResult(name, False, f"no answer in {CHECK_TIMEOUT:.0f} s")
            except Exception as exc:
                results[name] = CheckResult(name, False, f"the check failed: {exc}")

        async with anyio.create_task_group() as tg:
            for name in names:
                tg.start_soon(one, name)
        failures = [
            CheckResult(f.name, False, f"not loaded: {f.error}")
            for f in self.bridge.load_report.failures
        ]
        return failures + [results[name] for name in names]

    def sandboxes(self) -> list[dict[str, str]]:
        """The pages of the sandboxes running in this process.

        A plugin that serves a sandbox says so with a ``sandbox_url`` attribute (its root,
        empty while it is not running) and may name the page for people with
        ``sandbox_page``."""
        found = []
        for name, plugin in sorted(self.bridge.pm.list_name_plugin()):
            url = getattr(plugin, "sandbox_url", "")
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                page = getattr(plugin, "sandbox_page", "/")
                found.append({"name": name, "url": url.rstrip("/") + str(page)})
        return found

    async def _last_reply(self, session: Session) -> dict[str, str] | None:
        """The session's latest reply to the customer and what became of it."""
        transcript = await self.bridge.store.transcript(session.id)
        replies = [m for m in transcript if deliveries.tracked(m)]
        if not replies:
            return None
        record = await deliveries.get(self.bridge.store, replies[-1].id)
        state = record.state.value if record else "unknown"
        return {"state": state, "text": deliveries.describe(record)}

    def _session_row(self, session: Session, now: datetime) -> dict[str, Any]:
        contact = session.contact
        return {
            "id": session.id,
            "short": session.id[:8],
            "channel": session.channel,
            "contact": contact.name or next(iter(contact.emails + contact.phones), ""),
            "subject": session.subject,
            "case": (session.case.number or session.case.case_id) if session.case else "",
            "updated": since(session.updated_at, now),
            "link": self.bridge.session_link(session.id),
            "with_assistant": session.status is SessionStatus.ASSISTANT,
        }

    def routes(self) -> list[Route]:
        return [
            Route("/", self.home, methods=["GET"]),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/dashboard/jobs/replay", self.replay, methods=["POST"]),
            Route("/dashboard/jobs/{job_id:int}/replay", self.replay, methods=["POST"]),
            Route("/dashboard/sessions/{session_id}/handoff", self.handoff, methods=["POST"]),
        ]


async def _read_form(request: Request) -> dict[str, str] | None:
    """A small URL-encoded form's fields (the first value of each); None when too large."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            return None
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _digits(text: str) -> str:
    return text if text.isdigit() else ""


def _job_row(job: Job, now: datetime) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "attempts": job.attempts,
        "session": session_of(job),
        "last_error": job.last_error,
        "updated": since(job.updated_at, now),
        "run_at": job.run_at,
    }


def _dropped_row(dropped: DroppedInbound, now: datetime) -> dict[str, Any]:
    return {
        "channel": dropped.channel,
        "sender": dropped.sender,
        "reason": dropped.reason,
        "received": since(dropped.received_at, now),
    }


def dashboard_routes(bridge: Bridge) -> Sequence[Route]:
    """The dashboard's routes, mounted by :func:`casebridge.web.create_app`."""
    return Dashboard(bridge).routes()
