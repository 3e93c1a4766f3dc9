"""A sandbox SMS provider: a local server speaking the subset of Twilio's Messages API that
casebridge uses, for tests, demos and development without a real account.

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` creates a message (201, Twilio's
  JSON, status "queued", or "accepted" when sent through a messaging service), keeps it,
  then moves it through ``state.callback_statuses`` ("sent", "delivered" by default),
  posting each to its ``StatusCallback`` URL, signed. It refuses what Twilio refuses, with
  Twilio's codes, including its test "magic" numbers (see :mod:`casebridge_sms.sandbox_rules`).
* ``GET .../Messages.json`` lists them, newest first (filters ``To``, ``From``,
  ``DateSent``, ``DateSent<``, ``DateSent>``; paging with ``PageSize`` / ``Page``).
  As on Twilio, ``DateSent`` filters match the date sent only: a queued message has none.
* ``GET .../Messages/{Sid}.json`` fetches one.
  These three need HTTP basic auth with the account SID and auth token (401 otherwise).
* ``GET /sandbox/messages`` (JSON: what was sent, the inbound messages pushed and the status
  callbacks posted) and ``POST /sandbox/inbound`` (JSON ``{"from", "to", "body",
  "webhook_url"?, "media"?: [[url, content_type], ...]}``) drive it by hand or from an
  end-to-end test. The admin routes have no auth: serve the sandbox on loopback only.
* ``GET /sandbox`` is the page people read (:mod:`casebridge_sms.sandbox_pages`).

``SandboxState.fail_next`` makes the next creates answer with an error (429 with
``Retry-After``, 500...), to exercise a client's retries.

Twilio's own opt-out handling is emulated, on by default as on Twilio
(``SandboxState.opt_out_handling``): an inbound opt-out keyword (STOP...) blocks further
messages from that number to the customer (21610) until an opt-in keyword (START...), and
every keyword gets Twilio's own answer, kept in ``messages`` (direction "outbound-reply").
With ``advanced_opt_out`` (the default) the webhook carries ``OptOutType`` as Twilio's
Advanced Opt-Out does.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from casebridge.plugin import JsonInputError, Secret
from casebridge.plugin import read_json as loads
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from casebridge_sms.keywords import Keyword
from casebridge_sms.sandbox_pages import page_routes
from casebridge_sms.sandbox_rules import (
    AUTO_REPLIES,
    OPT_OUT_TYPES,
    VALID_FROM,
    Account,
    Refusal,
    matches_date_sent,
    opt_out_keyword,
    parse_date_filter,
    refuse_create,
)
from casebridge_sms.segments import segment
from casebridge_sms.signature import compute_signature

log = logging.getLogger(__name__)

API = "/2010-04-01/Accounts"
DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
_FAILED_STATUSES = {"failed", "undelivered"}


@dataclass
class SandboxState:
    """Everything the sandbox knows. Tests read ``messages``, ``inbound`` and ``callbacks``.

    ``callback_statuses`` are the statuses every created message goes through after the
    create call returns (an empty tuple leaves messages "queued"; "failed" or "undelivered"
    sets error 30003). ``webhook_url`` is where ``POST /sandbox/inbound`` delivers when the
    request names none. ``numbers`` are the account's own numbers, the only ``From`` accepted
    besides Twilio's test number +15005550006; ``messaging_service_sid`` is the account's
    messaging service (its pool is ``numbers``). ``opted_out`` holds the (our number,
    customer) pairs Twilio's opt-out handling blocks.
    """

    account_sid: str = DEFAULT_ACCOUNT_SID
    auth_token: Secret = field(default_factory=lambda: Secret("sandbox-token", "sandbox default"))
    messaging_service_sid: str | None = None
    webhook_url: str | None = None
    callback_statuses: tuple[str, ...] = ("sent", "delivered")
    numbers: tuple[str, ...] = ()
    opt_out_handling: bool = True
    advanced_opt_out: bool = True
    opted_out: set[tuple[str, str]] = field(default_factory=set)
    messages: list[dict[str, Any]] = field(default_factory=list)
    inbound: list[dict[str, Any]] = field(default_factory=list)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    failures: deque[tuple[int, float | None]] = field(default_factory=deque)

    def fail_next(self, status: int, *, retry_after: float | None = None, times: int = 1) -> None:
        """Answer the next ``times`` creates with HTTP ``status`` (and ``Retry-After``)."""
        for _ in range(times):
            self.failures.append((status, retry_after))

    def message(self, sid: str) -> dict[str, Any] | None:
        return next((m for m in self.messages if m["sid"] == sid), None)

    def account(self) -> Account:
        """What a create is checked against."""
        services = {self.messaging_service_sid} if self.messaging_service_sid else set()
        return Account(frozenset(self.numbers), frozenset(services), frozenset(self.opted_out))

    def new_message(
        self,
        to: str,
        from_: str | None,
        body: str,
        *,
        service: str | None = None,
        status: str = "queued",
        direction: str = "outbound-api",
    ) -> dict[str, Any]:
        """Keep a new outbound message and return its resource (Twilio's JSON)."""
        now = format_datetime(datetime.now(UTC))
        sid = "SM" + uuid.uuid4().hex
        resource: dict[str, Any] = {
            "sid": sid,
            "account_sid": self.account_sid,
            "messaging_service_sid": service,
            "to": to,
            "from": from_,
            "body": body,
            "status": status,
            "num_segments": str(segment(body).segments),
            "num_media": "0",
            "direction": direction,
            "api_version": "2010-04-01",
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "date_created": now,
            "date_updated": now,
            "date_sent": now if status in ("sent", "delivered") else None,
            "uri": f"{API}/{self.account_sid}/Messages/{sid}.json",
            "subresource_uris": {"media": f"{API}/{self.account_sid}/Messages/{sid}/Media.json"},
        }
        self.messages.append(resource)
        return resource

    def handle_keyword(self, from_: str, to: str, body: str) -> str | None:
        """Twilio's opt-out handling of an inbound ``body`` from ``from_`` to our ``to``: block
        or unblock the pair, answer with Twilio's text. The webhook's ``OptOutType``, or None
        when the body is no keyword (or the handling is off)."""
        keyword = opt_out_keyword(body) if self.opt_out_handling else None
        if keyword is None:
            return None
        if keyword is Keyword.OPT_OUT:
            self.opted_out.add((to, from_))
        elif keyword is Keyword.OPT_IN:
            self.opted_out.discard((to, from_))
        self.new_message(
            from_, to, AUTO_REPLIES[keyword], status="delivered", direction="outbound-reply"
        )
        return OPT_OUT_TYPES[keyword]

    async def send_inbound(
        self,
        webhook_url: str,
        from_: str,
        to: str,
        body: str,
        media: Sequence[tuple[str, str]] = (),
    ) -> httpx.Response:
        """POST an inbound message to ``webhook_url`` as Twilio does: its webhook form,
        signed with ``X-Twilio-Signature`` over ``webhook_url``. Returns the bridge's answer."""
        sid = ("MM" if media else "SM") + uuid.uuid4().hex
        opt_out_type = self.handle_keyword(from_, to, body)
        form = {
            "MessageSid": sid,
            "SmsSid": sid,
            "SmsMessageSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "To": to,
            "Body": body,
            "NumMedia": str(len(media)),
            "NumSegments": str(segment(body).segments),
            "SmsStatus": "received",
            "ApiVersion": "2010-04-01",
        }
        if self.messaging_service_sid:
            form["MessagingServiceSid"] = self.messaging_service_sid
        if opt_out_type and self.advanced_opt_out:
            form["OptOutType"] = opt_out_type
        for index, (url, content_type) in enumerate(media):
            form[f"MediaUrl{index}"] = url
            form[f"MediaContentType{index}"] = content_type
        signature = compute_signature(self.auth_token.reveal(), webhook_url, form)
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(
                webhook_url, data=form, headers={"X-Twilio-Signature": signature}
            )
        self.inbound.append(
            {"webhook_url": webhook_url, "form": form, "status": response.status_code}
        )
        return response


class SandboxApi:
    """The sandbox's request handlers, over one :class:`SandboxState`."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state

    def authorized(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", ""
        state = self.state
        good_user = hmac.compare_digest(user.encode(), state.account_sid.encode())
        good_password = hmac.compare_digest(password.encode(), state.auth_token.reveal().encode())
        if scheme.lower() != "basic" or not (good_user and good_password):
            return _error(
                401, 20003, "Authenticate", {"WWW-Authenticate": 'Basic realm="Twilio API"'}
            )
        if request.path_params["account"] != self.state.account_sid:
            return _error(404, 20404, "The requested resource was not found")
        return None

    async def create(self, request: Request) -> Response:
        if refusal := self.authorized(request):
            return refusal
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if self.state.failures:
            status, retry_after = self.state.failures.popleft()
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            code = 20429 if status == 429 else 20500
            return _error(status, code, f"Sandbox: injected HTTP {status}", headers)
        if refusal := refuse_create(fields, self.state.account()):
            return _refuse(refusal)
        from_ = fields.get("From") or None
        service = fields.get("MessagingServiceSid") or None
        # Through a messaging service alone Twilio answers "accepted" and picks the sender
        # later.
        resource = self.state.new_message(
            fields["To"],
            from_,
            fields.get("Body", ""),
            service=service,
            status="queued" if from_ else "accepted",
        )
        callback = fields.get("StatusCallback") or None
        return JSONResponse(
            resource,
            status_code=201,
            background=BackgroundTask(_advance, self.state, resource["sid"], callback),
        )

    async def list_messages(self, request: Request) -> Response:
        if refusal := self.authorized(request):
            return refusal
        query = request.query_params
        try:
            page_size = min(max(int(query.get("PageSize", "50")), 1), 1000)
            page = max(int(query.get("Page", "0")), 0)
            on = parse_date_filter(query.get("DateSent"))
            before = parse_date_filter(query.get("DateSent<"))
            after = parse_date_filter(query.get("DateSent>"))
        except ValueError as exc:
            return _error(400, 20001, f"Invalid query parameter: {exc}")
        selected = []
        for message in reversed(self.state.messages):
            if "To" in query and message["to"] != query["To"]:
                continue
            if "From" in query and message["from"] != query["From"]:
                continue
            sent = message["date_sent"] and parsedate_to_datetime(message["date_sent"])
            if not matches_date_sent(sent or None, on=on, before=before, after=after):
                continue
            selected.append(message)
        chunk = selected[page * page_size : (page + 1) * page_size]
        filters = [(k, v) for k, v in query.multi_items() if k not in ("Page", "PageSize")]
        base = f"{API}/{self.state.account_sid}/Messages.json"

        def page_uri(number: int) -> str:
            extra = [("PageSize", str(page_size)), ("Page", str(number))]
            return f"{base}?{urlencode(filters + extra)}"

        more = (page + 1) * page_size < len(selected)
        return JSONResponse(
            {
                "messages": chunk,
                "page": page,
                "page_size": page_size,
                "start": page * page_size,
                "end": page * page_size + max(len(chunk) - 1, 0),
                "uri": page_uri(page),
                "first_page_uri": page_uri(0),
                "previous_page_uri": page_uri(page - 1) if page else None,
                "next_page_uri": page_uri(page + 1) if more else None,
            }
        )

    async def fetch(self, request: Request) -> Response:
        if refusal := self.authorized(request):
            return refusal
        message = self.state.message(request.path_params["sid"])
        if message is None:
            return _error(404, 20404, "The requested resource was not found")
        return JSONResponse(message)

    async def admin_messages(self, request: Request) -> Response:
        state = self.state
        return JSONResponse(
            {"messages": state.messages, "inbound": state.inbound, "callbacks": state.callbacks}
        )

    async def admin_inbound(self, request: Request) -> Response:
        try:
            data = loads(await request.body())
        except JsonInputError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if not isinstance(data, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
        missing = [k for k in ("from", "to", "body") if not isinstance(data.get(k), str)]
        if missing:
            return JSONResponse(
                {"error": f"missing or not a string: {', '.join(missing)}"}, status_code=400
            )
        webhook_url = data.get("webhook_url") or self.state.webhook_url
        if not isinstance(webhook_url, str):
            return JSONResponse(
                {"error": "no webhook_url given and the sandbox has no default one"},
                status_code=400,
            )
        media = data.get("media") or []
        if not (
            isinstance(media, list)
            and all(
                isinstance(m, list) and len(m) == 2 and all(isinstance(x, str) for x in m)
                for m in media
            )
        ):
            return JSONResponse(
                {"error": "media must be a list of [url, content_type] pairs"}, status_code=400
            )
        try:
            response = await self.state.send_inbound(
                webhook_url, data["from"], data["to"], data["body"], [(u, t) for u, t in media]
            )
        except httpx.HTTPError as exc:
            return JSONResponse(
                {"error": f"cannot reach {webhook_url}: {type(exc).__name__} {exc}"},
                status_code=502,
            )
        return JSONResponse(
            {
                "message_sid": self.state.inbound[-1]["form"]["MessageSid"],
                "webhook_status": response.status_code,
                "webhook_body": response.text[:2000],
            }
        )


def create_sandbox_app(state: SandboxState) -> Starlette:
    """The sandbox as a Starlette app over ``state``."""
    api = SandboxApi(state)
    messages = f"{API}/{{account}}/Messages"
    return Starlette(
        routes=[
            Route(f"{messages}.json", api.create, methods=["POST"]),
            Route(f"{messages}.json", api.list_messages, methods=["GET"]),
            Route(f"{messages}/{{sid}}.json", api.fetch, methods=["GET"]),
            Route("/sandbox/messages", api.admin_messages, methods=["GET"]),
            Route("/sandbox/inbound", api.admin_inbound, methods=["POST"]),
            *page_routes(state),
        ]
    )


async def _advance(state: SandboxState, sid: str, callback: str | None) -> None:
    """Move a created message through the configured statuses, posting each callback."""
    for status in state.callback_statuses:
        message = state.message(sid)
        if message is None:
            return
        now = format_datetime(datetime.now(UTC))
        if message["from"] is None:
            # A messaging service's message gets its sender from the pool once queued.
            message["from"] = state.numbers[0] if state.numbers else VALID_FROM
        message["status"] = status
        message["date_updated"] = now
        if status == "sent":
            message["date_sent"] = now
        if status in _FAILED_STATUSES:
            message["error_code"] = 30003
            message["error_message"] = "Unreachable destination handset"
        if callback is None:
            continue
        form = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": state.account_sid,
            "From": message["from"] or "",
            "To": message["to"],
            "MessageStatus": status,
            "SmsStatus": status,
            "ApiVersion": "2010-04-01",
        }
        if message["messaging_service_sid"]:
            form["MessagingServiceSid"] = message["messaging_service_sid"]
        if message["error_code"]:
            form["ErrorCode"] = str(message["error_code"])
        signature = compute_signature(state.auth_token.reveal(), callback, form)
        record: dict[str, Any] = {"url": callback, "sid": sid, "status": status}
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                answer = await client.post(
                    callback, data=form, headers={"X-Twilio-Signature": signature}
                )
            record["http_status"] = answer.status_code
        except httpx.HTTPError as exc:
            record["error"] = f"{type(exc).__name__} {exc}"
            log.warning("status callback to %s failed: %s", callback, record["error"])
        state.callbacks.append(record)


def _refuse(refusal: Refusal, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(refusal.body(), status_code=refusal.status, headers=headers)


def _error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return _refuse(Refusal(code, message, status), headers)
