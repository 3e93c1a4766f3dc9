"""The SMS channel: the plugin object the entry point ``sms`` names.

State kept in the store under the plugin name ``sms`` (so it survives restarts and is shared
by every runner on one database):

* ``optout:<E.164>``      the number sent an opt-out keyword, or the provider refused a send
                          to it as opted out (Twilio 21610); replies to it are refused.
* ``keyword:<MessageSid>`` the keyword answer for this inbound was (being) sent: once only.
* ``attempt:<message id>`` a reply send was attempted (time, number, body) and its result.
* ``sent:<sid>``          which message a provider sid belongs to (for reconciliation).
* ``status:<sid>``        the delivery state the status callbacks reported.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from anyio.abc import TaskStatus
from casebridge import hookimpl
from casebridge.blobs import write_blob
from casebridge.contributions import Address, Command, ConfigSection, Service
from casebridge.errors import PermanentError, TransientError
from casebridge.json_input import loads
from casebridge.model import (
    AddressKind,
    Attachment,
    Author,
    CheckResult,
    Delivery,
    DeliveryState,
    Direction,
    Inbound,
    Message,
    RawInbound,
    Session,
    derived_id,
    utcnow,
)

from casebridge_sms.commands import sms_commands
from casebridge_sms.keyword_answers import KeywordAnswers, inbound_keyword
from casebridge_sms.phones import digits, normalize
from casebridge_sms.provider import (
    API_VERSION,
    OPTED_OUT_CODE,
    ProviderRefusal,
    SentMessage,
    TwilioProvider,
)
from casebridge_sms.segments import segment
from casebridge_sms.settings import INBOUND_PATH, SANDBOX_TOKEN, STATUS_PATH, SmsSettings
from casebridge_sms.webhook import PLUGIN, Webhooks, record_status, report_to_bridge

if TYPE_CHECKING:
    from casebridge.bridge import Bridge
    from starlette.routing import BaseRoute

    from casebridge_sms.sandbox import SandboxState

log = logging.getLogger(__name__)

# Twilio allows at most 10 media per MMS; more in a form is not from a real provider.
MAX_MEDIA = 10
# The provider's clock and ours may disagree: reconciliation looks this far before the
# recorded attempt.
CLOCK_SKEW = timedelta(minutes=2)
OPTED_OUT = "the customer opted out of SMS (STOP)"


def media_fields(fields: Mapping[str, str]) -> list[tuple[str, str]]:
    """The (URL, content type) of each MMS medium the webhook form references."""
    try:
        count = int(fields.get("NumMedia") or 0)
    except ValueError:
        raise PermanentError(f"NumMedia {fields.get('NumMedia')!r} is not a number") from None
    media = []
    for index in range(min(max(count, 0), MAX_MEDIA)):
        url = fields.get(f"MediaUrl{index}", "")
        if url:
            content_type = fields.get(f"MediaContentType{index}") or "application/octet-stream"
            media.append((url, content_type))
    return media


class MediaRefused(Exception):
    """A medium was not kept; the message says why."""


class SmsPlugin:
    """SMS through a Twilio-compatible provider (or the in-process sandbox provider)."""

    name = PLUGIN
    # The sandbox's page for people, linked from the dashboard while it runs (sandbox_url).
    sandbox_page = "/sandbox/messages"

    def __init__(self) -> None:
        self.bridge: Bridge | None = None
        self.settings: SmsSettings | None = None
        self.sandbox: SandboxState | None = None
        self.sandbox_url = ""
        self._provider: TwilioProvider | None = None

    # -- set-up ---------------------------------------------------------------------------

    @hookimpl
    def config_section(self) -> ConfigSection:
        return ConfigSection(PLUGIN, SmsSettings)

    @hookimpl
    def configure(self, bridge: Bridge, settings: SmsSettings) -> None:
        self.bridge = bridge
        self.settings = settings

    @hookimpl
    def services(self, bridge: Bridge) -> list[Service]:
        if self._settings().provider == "sandbox":
            return [Service("sms sandbox provider", self._run_sandbox)]
        return [Service("sms provider", self._run_provider)]

    @hookimpl
    def addresses(self) -> list[Address]:
        settings = self._settings()
        if settings.provider != "sandbox" or not self.sandbox_url:
            return []
        # The demo token is published; a token set in the TOML is a secret and not printed.
        token = (f", auth token {SANDBOX_TOKEN.reveal()}" if settings.auth_token is None
                 else "")
        return [Address("SMS sandbox", f"{self.sandbox_url}/sandbox",
                        f"account {settings.sid}{token}; see docs/sms.md")]

    @hookimpl
    def http_routes(self, bridge: Bridge) -> list[BaseRoute]:
        return list(Webhooks(bridge, self._settings()).routes())

    @hookimpl
    def cli_commands(self) -> list[Command]:
        return sms_commands()

    @hookimpl
    async def check(self) -> CheckResult:
        settings = self._settings()
        if settings.provider == "sandbox":
            return CheckResult(PLUGIN, True, "Active")
        return await self._check_account(settings)

    # -- services -------------------------------------------------------------------------

    @property
    def public_base(self) -> str:
        settings, bridge = self._settings(), self._bridge()
        return (settings.public_base_url or bridge.public_url).rstrip("/")

    @property
    def inbound_url(self) -> str:
        """Where the provider must post inbound messages."""
        return self.public_base + INBOUND_PATH

    @property
    def status_url(self) -> str:
        """Where the provider posts delivery statuses."""
        return self.public_base + STATUS_PATH

    async def _run_sandbox(self, task_status: TaskStatus[Any]) -> None:
        # Imported here: only a sandbox set-up needs the sandbox's app.
        from casebridge.web import serve

        from casebridge_sms.sandbox import SandboxState, create_sandbox_app

        settings = self._settings()
        state = SandboxState(
            account_sid=settings.sid,
            auth_token=settings.token,
            messaging_service_sid=settings.messaging_service_sid or None,
            webhook_url=self.inbound_url,
            numbers=tuple(settings.numbers),
        )
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve, create_sandbox_app(state), "127.0.0.1",
                                  settings.sandbox_port)
            self.sandbox, self.sandbox_url = state, f"http://127.0.0.1:{port}"
            log.info("SMS sandbox provider on %s (webhook %s)", self.sandbox_url,
                     self.inbound_url)
            await self._hold_provider(TwilioProvider(self.sandbox_url, settings.sid,
                                                     settings.token), task_status)

    async def _run_provider(self, task_status: TaskStatus[Any]) -> None:
        settings = self._settings()
        await self._hold_provider(
            TwilioProvider(settings.base_url, settings.sid, settings.token), task_status
        )

    async def _hold_provider(self, provider: TwilioProvider, task_status: TaskStatus[Any]) -> None:
        self._provider = provider
        try:
            task_status.started()
            await anyio.sleep_forever()
        finally:
            self._provider = None
            with anyio.CancelScope(shield=True):
                await provider.aclose()

    def provider(self) -> TwilioProvider:
        """The provider client. Outside ``casebridge run`` a Twilio client is made on first
        use; the sandbox provider only exists while its service runs."""
        if self._provider is None:
            settings = self._settings()
            if settings.provider == "sandbox":
                raise TransientError(
                    "the SMS sandbox provider is not running (it starts with the runner)"
                )
            self._provider = TwilioProvider(settings.base_url, settings.sid, settings.token)
        return self._provider

    # -- inbound --------------------------------------------------------------------------

    @hookimpl
    async def ingest(self, raw: RawInbound) -> Inbound:
        settings = self._settings()
        fields = raw.fields
        sid = fields.get("MessageSid") or fields.get("SmsMessageSid") or fields.get("SmsSid")
        if not sid:
            raise PermanentError("the SMS webhook form has no MessageSid")
        sender = self._e164(fields, "From")
        ours = self._e164(fields, "To")
        body = fields.get("Body", "")
        if len(body) > settings.max_body_chars:
            raise PermanentError(
                f"the SMS body has {len(body)} characters, over the limit of "
                f"{settings.max_body_chars} ([plugins.sms] max_body_chars)"
            )
        keyword, provider_answered = inbound_keyword(fields)
        if keyword is not None:
            answers = KeywordAnswers(self._bridge().store, settings, self.provider, self._sender)
            return await answers.handle(keyword, sid, sender, ours, body,
                                        provider_answered=provider_answered)
        attachments, notes = await self._media(fields)
        meta = {
            key: fields[name]
            for key, name in (("messaging_service_sid", "MessagingServiceSid"),
                              ("num_segments", "NumSegments"))
            if fields.get(name)
        }
        message = Message(
            id=derived_id("sms", sid),
            channel=PLUGIN,
            direction=Direction.INBOUND,
            author=Author.CUSTOMER,
            external_id=sid,
            sender=sender,
            recipients=(ours,),
            text=body,
            original_text=body,
            attachments=attachments,
            sent_at=raw.received_at,
            received_at=raw.received_at,
            notes=notes,
            meta=meta,
        )
        return Inbound(message, sender_kind=AddressKind.PHONE)

    def _e164(self, fields: Mapping[str, str], name: str) -> str:
        value = fields.get(name, "")
        if not value:
            raise PermanentError(f"the SMS webhook form has no {name} number")
        try:
            return normalize(value, self._settings().default_region)
        except ValueError as exc:
            raise PermanentError(f"{name}: {exc}") from None

    def _sender(self, ours: str) -> dict[str, str]:
        """``from_`` or ``messaging_service_sid`` for a message sent from ``ours``."""
        settings = self._settings()
        if ours in settings.numbers or not settings.messaging_service_sid:
            return {"from_": ours or settings.numbers[0]}
        return {"messaging_service_sid": settings.messaging_service_sid}

    async def _media(
        self, fields: Mapping[str, str]
    ) -> tuple[tuple[Attachment, ...], tuple[str, ...]]:
        settings = self._settings()
        attachments, notes = [], []
        for index, (url, content_type) in enumerate(media_fields(fields)):
            name = f"media{index}"
            if not settings.download_media:
                attachments.append(Attachment(name, content_type, 0, "", location=url))
                continue
            try:
                data = await self._download(url, settings.max_media_bytes)
            except MediaRefused as exc:
                notes.append(f"{name} not kept: {exc}")
                attachments.append(
                    Attachment(name, content_type, 0, "", location=url, refused=str(exc))
                )
                continue
            digest = hashlib.sha256(data).hexdigest()
            folder = self._bridge().blob_dir
            location = await anyio.to_thread.run_sync(write_blob, folder, data, digest)
            attachments.append(Attachment(name, content_type, len(data), digest, location))
        return tuple(attachments), tuple(notes)

    async def _download(self, url: str, limit: int) -> bytes:
        settings = self._settings()
        if not url.startswith(("http://", "https://")):
            raise MediaRefused(f"{url!r} is not an http(s) URL")
        try:
            # httpx drops the credentials when a redirect leaves the provider's host.
            async with (
                httpx.AsyncClient(timeout=30, follow_redirects=True) as client,
                client.stream("GET", url, auth=(settings.sid, settings.token.reveal())) as answer,
            ):
                if answer.status_code >= 400:
                    raise MediaRefused(f"download failed: HTTP {answer.status_code}")
                declared = answer.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise MediaRefused(
                        f"{declared} bytes is over the {limit}-byte limit (max_media_bytes)"
                    )
                chunks, size = [], 0
                async for chunk in answer.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise MediaRefused(
                            f"over the {limit}-byte limit (max_media_bytes)"
                        )
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise MediaRefused(f"download failed: {type(exc).__name__}") from None
        return b"".join(chunks)

    # -- outbound -------------------------------------------------------------------------

    @hookimpl
    async def deliver_reply(
        self, session: Session, message: Message, transcript: Sequence[Message]
    ) -> Delivery:
        settings, store = self._settings(), self._bridge().store
        key = f"attempt:{message.id}"
        attempt = await store.get_state(PLUGIN, key)
        if attempt and attempt.get("sid"):
            return Delivery(DeliveryState.SENT, attempt["sid"], segments=attempt["segments"])
        if attempt and attempt.get("failed"):
            return Delivery(DeliveryState.FAILED, detail=attempt["failed"])
        if attempt and attempt.get("refused"):
            return Delivery(DeliveryState.REFUSED, detail=attempt["refused"])
        if attempt is not None:
            # An earlier call recorded its attempt but not the result (a crash, a timeout):
            # the SMS may be out already.
            found = await self._reconcile(attempt, message.id)
            if found is not None:
                return await self._sent(key, attempt, found, message.id)
        to = self._recipient(session, message)
        if to is None:
            return Delivery(DeliveryState.FAILED,
                            detail="the customer has no phone number to send an SMS to")
        if await store.get_state(PLUGIN, f"optout:{to}") is not None:
            return Delivery(DeliveryState.REFUSED, detail=OPTED_OUT)
        parts = segment(message.text, smart=settings.smart_encoding)
        body = "".join(parts.parts)
        if not body.strip():
            return Delivery(DeliveryState.REFUSED, detail="the reply has no text to send by SMS")
        if parts.segments > settings.max_segments:
            return Delivery(
                DeliveryState.REFUSED,
                detail=(f"the reply needs {parts.segments} SMS segments ({parts.encoding}), "
                        f"more than the limit of {settings.max_segments}; shorten it "
                        "(nothing was sent)"),
            )
        sender = self._sender(session.channel_address or message.sender)
        if attempt is None:
            # "from" bounds the crash-recovery lookup (None: a messaging service picks it).
            attempt = {"at": utcnow().isoformat(), "to": to, "body": body,
                       "segments": parts.segments, "from": sender.get("from_")}
            if not await store.compare_and_put_state(PLUGIN, key, None, attempt):
                raise TransientError(f"message {message.id} is being delivered by another worker")
        try:
            sent = await self.provider().send(attempt["to"], attempt["body"], **sender,
                                              status_callback=self.status_url)
        except PermanentError as exc:
            if isinstance(exc, ProviderRefusal) and exc.code == OPTED_OUT_CODE:
                return await self._opted_out_at_provider(key, attempt, exc)
            await store.put_state(PLUGIN, key, {**attempt, "failed": str(exc)})
            return Delivery(DeliveryState.FAILED, detail=str(exc))
        return await self._sent(key, attempt, sent, message.id)

    async def _opted_out_at_provider(
        self, key: str, attempt: Mapping[str, Any], exc: ProviderRefusal
    ) -> Delivery:
        """The provider refused the reply because the number opted out there (its own STOP
        handling, or the carrier's): remember the opt-out, refuse this reply and later ones."""
        store = self._bridge().store
        await store.put_state(PLUGIN, f"optout:{attempt['to']}",
                              {"at": utcnow().isoformat(), "provider_code": exc.code})
        detail = f"{OPTED_OUT}; the provider refused the SMS: {exc}"
        await store.put_state(PLUGIN, key, {**attempt, "refused": detail})
        return Delivery(DeliveryState.REFUSED, detail=detail)

    @staticmethod
    def _recipient(session: Session, message: Message) -> str | None:
        # The core addresses a reply to the contact's first address, which can be an e-mail
        # for a contact known on both channels: an SMS goes to a phone number.
        for number in (*message.recipients, *session.contact.phones):
            try:
                digits(number)
            except ValueError:
                continue
            return number
        return None

    async def _reconcile(self, attempt: Mapping[str, Any], message_id: str) -> SentMessage | None:
        """The provider's message from an earlier attempt whose result was not recorded."""
        store = self._bridge().store
        since = datetime.fromisoformat(attempt["at"]) - CLOCK_SKEW
        # Listed by To and From, not by date: Twilio has no date_sent for a queued message.
        # No From for a reply through a messaging service: the pool picks the sender.
        recent = await self.provider().recent_messages(
            attempt["to"], since, from_=attempt.get("from")
        )
        for candidate in recent:
            if candidate.body != attempt["body"]:
                continue
            owner = await store.get_state(PLUGIN, f"sent:{candidate.sid}")
            if owner in (None, message_id):
                log.info("SMS for message %s was sent before a crash (%s): not sending again",
                         message_id, candidate.sid)
                return candidate
        return None

    async def _sent(
        self, key: str, attempt: Mapping[str, Any], sent: SentMessage, message_id: str
    ) -> Delivery:
        store = self._bridge().store
        await store.put_state(PLUGIN, f"sent:{sent.sid}", message_id)
        await store.put_state(PLUGIN, key, {**attempt, "sid": sent.sid})
        if sent.status:
            try:
                await record_status(store, sent.sid, sent.status)
            except ValueError:
                log.info("SMS %s: provider status %r not tracked", sent.sid, sent.status)
        # A status callback that arrived before ``sent:<sid>`` was written found no owner.
        status = await store.get_state(PLUGIN, f"status:{sent.sid}")
        if status:
            await report_to_bridge(self._bridge(), message_id, status["status"],
                                   status.get("error_code", ""))
        return Delivery(DeliveryState.SENT, sent.sid, segments=attempt["segments"])

    # -- check ----------------------------------------------------------------------------

    async def _check_account(self, settings: SmsSettings) -> CheckResult:
        url = f"{settings.base_url.rstrip('/')}/{API_VERSION}/Accounts/{settings.sid}/Messages.json"
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                answer = await client.get(
                    url, params={"PageSize": "1"},
                    auth=(settings.sid, settings.token.reveal()),
                )
        except httpx.HTTPError as exc:
            return CheckResult(PLUGIN, False,
                               f"cannot reach {settings.base_url}: {type(exc).__name__}")
        reason = _provider_message(answer, settings.token.reveal())
        if answer.status_code == 401:
            return CheckResult(PLUGIN, False,
                               f"the provider refused account {settings.sid} with this auth "
                               f"token (HTTP 401{reason})")
        if answer.status_code == 404:
            return CheckResult(PLUGIN, False,
                               f"the provider does not know account {settings.sid} "
                               f"(HTTP 404{reason})")
        if answer.status_code >= 400:
            return CheckResult(PLUGIN, False, f"HTTP {answer.status_code}{reason} from {url}")
        try:
            data = loads(answer.content)
        except ValueError:
            data = None
        if not isinstance(data, dict) or "messages" not in data:
            return CheckResult(PLUGIN, False,
                               f"{url} did not answer with a Twilio messages list")
        return CheckResult(PLUGIN, True, "Active")

    # -- helpers --------------------------------------------------------------------------

    def _settings(self) -> SmsSettings:
        if self.settings is None:
            raise PermanentError("the sms plugin was not configured")
        return self.settings

    def _bridge(self) -> Bridge:
        if self.bridge is None:
            raise PermanentError("the sms plugin was not configured")
        return self.bridge


def _provider_message(answer: httpx.Response, token: str) -> str:
    """``": <the provider's message>"`` from an error answer, or empty; never the token."""
    try:
        data = loads(answer.content)
    except ValueError:
        return ""
    message = data.get("message") if isinstance(data, dict) else None
    if not isinstance(message, str) or not message:
        return ""
    return ": " + (message.replace(token, "***") if token else message)[:200]
