"""A sandbox SMS provider: a local server speaking the subset of Twilio's Messages API that
casebridge uses, for tests, demos and development without a real account.

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` creates a message (201, Twilio's
  JSON, status "queued"), keeps it, then moves it through ``state.callback_statuses``
  ("sent", "delivered" by default), posting each to its ``StatusCallback`` URL, signed.
* ``GET .../Messages.json`` lists them, newest first (filters ``To``, ``From``,
  ``DateSent``, ``DateSent<``, ``DateSent>``; paging with ``PageSize`` / ``Page``).
  A message not yet sent is filtered by its creation date, so a reconciliation lookup finds it.
* ``GET .../Messages/{Sid}.json`` fetches one.
  These three need HTTP basic auth with the account SID and auth token (401 otherwise).
* ``GET /sandbox/messages`` (JSON: what was sent, the inbound messages pushed and the status
  callbacks posted) and ``POST /sandbox/inbound`` (JSON ``{"from", "to", "body",
  "webhook_url"?, "media"?: [[url, content_type], ...]}``) drive it by hand or from an
  end-to-end test. The admin routes have no auth: serve the sandbox on loopback only.

``SandboxState.fail_next`` makes the next creates answer with an error (429 with
``Retry-After``, 500...), to exercise a client's retries.
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
from datetime import UTC, date, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from casebridge.json_input import JsonInputError, loads
from casebridge.secrets import Secret
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from casebridge_sms.phones import digits
from casebridge_sms.segments import segment
from casebridge_sms.signature import compute_signature

log = logging.getLogger(__name__)

API = "/2010-04-01/Accounts"
DEFAULT_ACCOUNT_SID = "AC" + "0" * 32
MAX_BODY_CHARS = 1600
_FAILED_STATUSES = {"failed", "undelivered"}


@dataclass
class SandboxState:
    """Everything the sandbox knows. Tests read ``messages``, ``inbound`` and ``callbacks``.

    ``callback_statuses`` are the statuses every created message goes through after the
    create call returns (an empty tuple leaves messages "queued"; "failed" or "undelivered"
    sets error 30003). ``webhook_url`` is where ``POST /sandbox/inbound`` delivers when the
    request names none.
    """

    account_sid: str = DEFAULT_ACCOUNT_SID
    auth_token: Secret = field(default_factory=lambda: Secret("sandbox-token", "sandbox default"))
    messaging_service_sid: str | None = None
    webhook_url: str | None = None
    callback_statuses: tuple[str, ...] = ("sent", "delivered")
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


def create_sandbox_app(state: SandboxState) -> Starlette:
    """The sandbox as a Starlette app over ``state``."""

    def authorized(request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", ""
        good_user = hmac.compare_digest(user.encode(), state.account_sid.encode())
        good_password = hmac.compare_digest(password.encode(), state.auth_token.reveal().encode())
        if scheme.lower() != "basic" or not (good_user and good_password):
            return _error(
                401, 20003, "Authenticate", {"WWW-Authenticate": 'Basic realm="Twilio API"'}
            )
        if request.path_params["account"] != state.account_sid:
            return _error(404, 20404, "The requested resource was not found")
        return None

    async def create(request: Request) -> Response:
        if refusal := authorized(request):
            return refusal
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if state.failures:
            status, retry_after = state.failures.popleft()
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            code = 20429 if status == 429 else 20500
            return _error(status, code, f"Sandbox: injected HTTP {status}", headers)
        to = fields.get("To", "")
        from_ = fields.get("From") or None
        service = fields.get("MessagingServiceSid") or None
        body = fields.get("Body", "")
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        try:
            digits(to)
        except ValueError:
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not from_ and not service:
            return _error(400, 21603, "A 'From' phone number is required.")
        if not body and not fields.get("MediaUrl"):
            return _error(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY_CHARS:
            return _error(
                400, 21617, "The concatenated message body exceeds the 1600 character limit."
            )
        now = format_datetime(datetime.now(UTC))
        sid = "SM" + uuid.uuid4().hex
        resource: dict[str, Any] = {
            "sid": sid,
            "account_sid": state.account_sid,
            "messaging_service_sid": service,
            "to": to,
            "from": from_,
            "body": body,
            "status": "queued",
            "num_segments": str(segment(body).segments),
            "num_media": "0",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "uri": f"{API}/{state.account_sid}/Messages/{sid}.json",
            "subresource_uris": {"media": f"{API}/{state.account_sid}/Messages/{sid}/Media.json"},
        }
        state.messages.append(resource)
        callback = fields.get("StatusCallback") or None
        return JSONResponse(
            resource, status_code=201, background=BackgroundTask(_advance, state, sid, callback)
        )

    async def list_messages(request: Request) -> Response:
        if refusal := authorized(request):
            return refusal
        query = request.query_params
        try:
            page_size = min(max(int(query.get("PageSize", "50")), 1), 1000)
            page = max(int(query.get("Page", "0")), 0)
            on = _query_date(query.get("DateSent"))
            before = _query_date(query.get("DateSent<"))
            after = _query_date(query.get("DateSent>"))
        except ValueError as exc:
            return _error(400, 20001, f"Invalid query parameter: {exc}")
        selected = []
        for message in reversed(state.messages):
            if "To" in query and message["to"] != query["To"]:
                continue
            if "From" in query and message["from"] != query["From"]:
                continue
            day = parsedate_to_datetime(message["date_sent"] or message["date_created"]).date()
            if (on and day != on) or (before and day > before) or (after and day < after):
                continue
            selected.append(message)
        chunk = selected[page * page_size : (page + 1) * page_size]
        filters = [(k, v) for k, v in query.multi_items() if k not in ("Page", "PageSize")]
        base = f"{API}/{state.account_sid}/Messages.json"

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

    async def fetch(request: Request) -> Response:
        if refusal := authorized(request):
            return refusal
        message = state.message(request.path_params["sid"])
        if message is None:
            return _error(404, 20404, "The requested resource was not found")
        return JSONResponse(message)

    async def admin_messages(request: Request) -> Response:
        return JSONResponse(
            {"messages": state.messages, "inbound": state.inbound, "callbacks": state.callbacks}
        )

    async def admin_inbound(request: Request) -> Response:
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
        webhook_url = data.get("webhook_url") or state.webhook_url
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
            response = await state.send_inbound(
                webhook_url, data["from"], data["to"], data["body"], [(u, t) for u, t in media]
            )
        except httpx.HTTPError as exc:
            return JSONResponse(
                {"error": f"cannot reach {webhook_url}: {type(exc).__name__} {exc}"},
                status_code=502,
            )
        return JSONResponse(
            {
                "message_sid": state.inbound[-1]["form"]["MessageSid"],
                "webhook_status": response.status_code,
                "webhook_body": response.text[:2000],
            }
        )

    messages = f"{API}/{{account}}/Messages"
    return Starlette(
        routes=[
            Route(f"{messages}.json", create, methods=["POST"]),
            Route(f"{messages}.json", list_messages, methods=["GET"]),
            Route(f"{messages}/{{sid}}.json", fetch, methods=["GET"]),
            Route("/sandbox/messages", admin_messages, methods=["GET"]),
            Route("/sandbox/inbound", admin_inbound, methods=["POST"]),
        ]
    )


async def _advance(state: SandboxState, sid: str, callback: str | None) -> None:
    """Move a created message through the configured statuses, posting each callback."""
    for status in state.callback_statuses:
        message = state.message(sid)
        if message is None:
            return
        now = format_datetime(datetime.now(UTC))
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


def _error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _query_date(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None
