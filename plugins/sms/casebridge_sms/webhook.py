"""The provider's webhooks: ``POST /webhooks/sms/inbound`` and ``POST /webhooks/sms/status``.

Both verify ``X-Twilio-Signature`` over the public URL the provider called (``[plugins.sms]
public_base_url`` or ``[bridge] public_url``, plus the path and query) and the form fields.
An inbound is acknowledged (200, empty TwiML) only after ``context.receive`` made it durable.
A status callback moves the message's recorded delivery state forward, never back.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from casebridge.plugin import (
    BodyTooLarge,
    PermanentError,
    PluginContext,
    PluginState,
    RawInbound,
    read_body,
)
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from casebridge_sms.phones import normalize
from casebridge_sms.settings import INBOUND_PATH, STATUS_PATH, SmsSettings
from casebridge_sms.signature import verify_signature

log = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

# Twilio's message statuses, by how far along they are. Final statuses share the top rank
# (below "read"), so the first final one reported stays: "delivered" is not undone.
STATUS_RANK: dict[str, int] = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "partially_delivered": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "read": 5,
}


def status_key(sid: str) -> str:
    return f"status:{sid}"


def advance_status(
    current: Mapping[str, Any] | None, status: str, *, at: str, error_code: str = ""
) -> dict[str, Any] | None:
    """The delivery record after a report of ``status``, or None when the report changes
    nothing (the same status reported before).

    The record is ``{"status", "seen", "error_code", "updated_at"}``: ``status`` is the
    furthest status reported so far, ``seen`` every distinct status in arrival order. A
    report of an earlier status is remembered in ``seen`` but does not move ``status`` back.
    Raises ValueError for a status that is not one of :data:`STATUS_RANK`.
    """
    if status not in STATUS_RANK:
        raise ValueError(
            f"unknown MessageStatus {status!r} (expected one of {', '.join(STATUS_RANK)})"
        )
    seen = list(current["seen"]) if current else []
    if status in seen:
        return None
    record = dict(current) if current else {"status": status, "error_code": ""}
    record["seen"] = [*seen, status]
    record["updated_at"] = at
    if current is None or STATUS_RANK[status] > STATUS_RANK[current["status"]]:
        record["status"] = status
        record["error_code"] = error_code
    return record


async def record_status(
    state: PluginState, sid: str, status: str, *, error_code: str = "", at: datetime | None = None
) -> dict[str, Any] | None:
    """Apply one status report for message ``sid`` to the stored record, atomically (two
    callbacks racing do not lose one). Returns the stored record."""
    stamp = (at or datetime.now(UTC)).isoformat()
    key = status_key(sid)
    while True:
        current = await state.get(key)
        new = advance_status(current, status, at=stamp, error_code=error_code)
        if new is None:
            return current
        if await state.compare_and_put(key, current, new):
            return new


async def report_outcome(context: PluginContext, message_id: str, status: str,
                         error_code: str = "") -> None:
    """Tell the core what became of the reply ``message_id`` once a provider status says it
    arrived ("delivered") or will not ("failed", "undelivered"); other statuses say nothing
    new. A callback can beat the send's own bookkeeping, so the sender calls this too."""
    if status == "delivered":
        await context.report_delivery(message_id, "delivered")
    elif status in ("failed", "undelivered"):
        code = f" (provider error {error_code})" if error_code else ""
        await context.report_delivery(message_id, "failed",
                                      f"the SMS provider reported it {status}{code}")


def form_fields(body: bytes) -> list[tuple[str, str]]:
    """The fields of an ``application/x-www-form-urlencoded`` body, in order, repeats kept.

    Raises ValueError when the body is not UTF-8.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the form body is not UTF-8") from None
    return parse_qsl(text, keep_blank_values=True)


def our_channel(settings: SmsSettings, fields: Mapping[str, str]) -> str | None:
    """Why this webhook is not for one of our numbers or our messaging service, or None when
    it is."""
    to = fields.get("To", "")
    service = fields.get("MessagingServiceSid", "")
    if settings.messaging_service_sid and service == settings.messaging_service_sid:
        return None
    if not to:
        return "the webhook form has no To number"
    try:
        number = normalize(to, settings.default_region)
    except ValueError:
        number = to
    if number in settings.numbers:
        return None
    why = f"To {to!r} is not one of our numbers ([plugins.sms] numbers)"
    if service:
        why += f" and MessagingServiceSid {service!r} is not ours"
    return why


class Webhooks:
    """The two routes, bound to the plugin's context and settings."""

    def __init__(self, context: PluginContext, settings: SmsSettings) -> None:
        self.context = context
        self.settings = settings

    def routes(self) -> list[Route]:
        return [
            Route(INBOUND_PATH, self.inbound, methods=["POST"]),
            Route(STATUS_PATH, self.status, methods=["POST"]),
        ]

    @property
    def public_base(self) -> str:
        return (self.settings.public_base_url or self.context.public_url).rstrip("/")

    def signed_url(self, request: Request, path: str) -> str:
        query = request.url.query
        return self.public_base + path + (f"?{query}" if query else "")

    async def _verified_form(
        self, request: Request, path: str, what: str
    ) -> Sequence[tuple[str, str]] | Response:
        """The request's form when its signature is right, else the answer to give."""
        try:
            body = await read_body(request, self.context.max_body_bytes)
        except BodyTooLarge as exc:
            return PlainTextResponse(str(exc), status_code=413)
        try:
            form = form_fields(body)
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        signature = request.headers.get("x-twilio-signature", "")
        peer = request.client.host if request.client else "?"
        if not signature:
            log.warning("SMS %s webhook from %s refused: no X-Twilio-Signature", what, peer)
            return PlainTextResponse("missing X-Twilio-Signature", status_code=403)
        url = self.signed_url(request, path)
        if not verify_signature(self.settings.token.reveal(), url, form, signature):
            log.warning(
                "SMS %s webhook from %s refused: X-Twilio-Signature does not match %s (check "
                "the auth token and [plugins.sms] public_base_url)", what, peer, url,
            )
            return PlainTextResponse("invalid X-Twilio-Signature", status_code=403)
        return form

    async def inbound(self, request: Request) -> Response:
        form = await self._verified_form(request, INBOUND_PATH, "inbound")
        if isinstance(form, Response):
            return form
        fields = dict(form)
        refusal = our_channel(self.settings, fields)
        if refusal is not None:
            log.warning("SMS inbound refused: %s", refusal)
            return PlainTextResponse(refusal, status_code=400 if not fields.get("To") else 404)
        raw = RawInbound(
            channel=self.context.name, fields=fields, sender=fields.get("From", ""),
            transport_id=fields.get("MessageSid") or fields.get("SmsSid", ""),
            peer=request.client.host if request.client else "",
        )
        try:
            await self.context.receive(raw)
        except PermanentError as exc:
            # Retrying cannot help: the core listed it with the dropped inbounds; tell the
            # provider why.
            log.warning("SMS inbound %s refused: %s", fields.get("MessageSid", "?"), exc)
            return PlainTextResponse(str(exc), status_code=400)
        return Response(EMPTY_TWIML, media_type="text/xml")

    async def status(self, request: Request) -> Response:
        form = await self._verified_form(request, STATUS_PATH, "status")
        if isinstance(form, Response):
            return form
        fields = dict(form)
        sid = fields.get("MessageSid") or fields.get("SmsSid", "")
        status = fields.get("MessageStatus") or fields.get("SmsStatus", "")
        if not sid or not status:
            return PlainTextResponse(
                "a status callback needs MessageSid and MessageStatus", status_code=400
            )
        try:
            await record_status(
                self.context.state, sid, status, error_code=fields.get("ErrorCode", "")
            )
        except ValueError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        if status in ("failed", "undelivered"):
            log.warning("SMS %s %s (error %s)", sid, status, fields.get("ErrorCode", "none"))
        await self._report(sid, status, fields.get("ErrorCode", ""))
        return Response(status_code=204)

    async def _report(self, sid: str, status: str, error_code: str) -> None:
        owner = await self.context.state.get(f"sent:{sid}")
        if isinstance(owner, str):
            await report_outcome(self.context, owner, status, error_code)
