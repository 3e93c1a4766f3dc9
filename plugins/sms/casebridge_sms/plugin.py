"""The SMS channel: the plugin object the entry point ``sms`` names.

State kept in the plugin's own state (``context.state``: it survives restarts and is shared
by every runner on one database):

* ``optout:<E.164>``      the number sent an opt-out keyword, or the provider refused a send
                          to it as opted out (Twilio 21610); replies to it are refused.
* ``keyword:<MessageSid>`` the keyword answer for this inbound was (being) sent: once only.
* ``sent:<sid>``          which reply a provider sid belongs to (status callbacks, and
                          reconciliation after a send whose outcome was not recorded).
* ``status:<sid>``        the delivery state the status callbacks reported.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from anyio.abc import TaskStatus
from casebridge.plugin import (
    Address,
    AddressKind,
    Attachment,
    Author,
    CheckResult,
    Command,
    ConfigSection,
    Delivery,
    DeliveryState,
    Direction,
    Inbound,
    Message,
    PermanentError,
    PluginContext,
    RawInbound,
    Service,
    Session,
    TransientError,
    derived_id,
    hookimpl,
    serve_http,
    utcnow,
)
from casebridge.plugin import read_json as loads

from casebridge_sms.commands import sms_commands
from casebridge_sms.keyword_answers import KeywordAnswers, inbound_keyword
from casebridge_sms.media import keep_media, media_fields
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
from casebridge_sms.webhook import Webhooks, record_status, report_outcome

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from casebridge_sms.sandbox import SandboxState

log = logging.getLogger(__name__)

# The provider's clock and ours may disagree: reconciliation looks this far before the
# recorded attempt.
CLOCK_SKEW = timedelta(minutes=2)
OPTED_OUT = "the customer opted out of SMS (STOP)"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A reply as the SMS it becomes: the number, the (smart-encoded) body, its segment count
    and ``from_`` or ``messaging_service_sid`` for the provider."""

    to: str
    body: str
    segments: int
    sender: dict[str, str]


class SmsPlugin:
    """SMS through a Twilio-compatible provider (or the in-process sandbox provider)."""

    # The default name, for the config section; configure() takes the TOML's.
    name = "sms"
    # The sandbox's page for people, linked from the dashboard while it runs (sandbox_url).
    sandbox_page = "/sandbox/messages"

    def __init__(self) -> None:
        self._context: PluginContext | None = None
        self.sandbox: SandboxState | None = None
        self.sandbox_url = ""
        self._provider: TwilioProvider | None = None

    # -- set-up ---------------------------------------------------------------------------

    @hookimpl
    def config_section(self) -> ConfigSection:
        return ConfigSection(self.name, SmsSettings)

    @hookimpl
    def configure(self, context: PluginContext) -> None:
        self._context = context
        self.name = context.name

    @hookimpl
    def services(self) -> list[Service]:
        if self.settings.provider == "sandbox":
            return [Service("sms sandbox provider", self._run_sandbox)]
        return [Service("sms provider", self._run_provider)]

    @hookimpl
    def addresses(self) -> list[Address]:
        settings = self.settings
        if settings.provider != "sandbox" or not self.sandbox_url:
            return []
        # The demo token is published; a token set in the TOML is a secret and not printed.
        token = (f", auth token {SANDBOX_TOKEN.reveal()}" if settings.auth_token is None
                 else "")
        return [Address("SMS sandbox", f"{self.sandbox_url}/sandbox",
                        f"account {settings.sid}{token}; see docs/sms.md")]

    @hookimpl
    def http_routes(self) -> list[BaseRoute]:
        return list(Webhooks(self.context, self.settings).routes())

    @hookimpl
    def cli_commands(self) -> list[Command]:
        return sms_commands()

    @hookimpl
    async def check(self) -> CheckResult:
        settings = self.settings
        if settings.provider == "sandbox":
            return CheckResult(self.name, True, "Active")
        return await self._check_account(settings)

    # -- services -------------------------------------------------------------------------

    @property
    def public_base(self) -> str:
        settings = self.settings
        return (settings.public_base_url or self.context.public_url).rstrip("/")

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
        from casebridge_sms.sandbox import SandboxState, create_sandbox_app

        settings = self.settings
        state = SandboxState(
            account_sid=settings.sid,
            auth_token=settings.token,
            messaging_service_sid=settings.messaging_service_sid or None,
            webhook_url=self.inbound_url,
            numbers=tuple(settings.numbers),
        )
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve_http, create_sandbox_app(state), "127.0.0.1",
                                  settings.sandbox_port)
            self.sandbox, self.sandbox_url = state, f"http://127.0.0.1:{port}"
            log.info("SMS sandbox provider on %s (webhook %s)", self.sandbox_url,
                     self.inbound_url)
            await self._hold_provider(TwilioProvider(self.sandbox_url, settings.sid,
                                                     settings.token), task_status)

    async def _run_provider(self, task_status: TaskStatus[Any]) -> None:
        settings = self.settings
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
            settings = self.settings
            if settings.provider == "sandbox":
                raise TransientError(
                    "the SMS sandbox provider is not running (it starts with the runner)"
                )
            self._provider = TwilioProvider(settings.base_url, settings.sid, settings.token)
        return self._provider

    # -- inbound --------------------------------------------------------------------------

    @hookimpl
    async def ingest(self, raw: RawInbound) -> Inbound:
        settings = self.settings
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
            answers = KeywordAnswers(self.context.state, settings, self.provider, self._sender)
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
            channel=self.name,
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
            return normalize(value, self.settings.default_region)
        except ValueError as exc:
            raise PermanentError(f"{name}: {exc}") from None

    def _sender(self, ours: str) -> dict[str, str]:
        """``from_`` or ``messaging_service_sid`` for a message sent from ``ours``."""
        settings = self.settings
        if ours in settings.numbers or not settings.messaging_service_sid:
            return {"from_": ours or settings.numbers[0]}
        return {"messaging_service_sid": settings.messaging_service_sid}

    async def _media(
        self, fields: Mapping[str, str]
    ) -> tuple[tuple[Attachment, ...], tuple[str, ...]]:
        settings = self.settings
        auth = (settings.sid, settings.token.reveal()) if settings.download_media else None
        return await keep_media(media_fields(fields), self.context.blobs, auth,
                                settings.max_media_bytes)

    # -- outbound -------------------------------------------------------------------------
    # At most once is the core's (casebridge.delivery_log): deliver_reply sends once per
    # call, and reconcile_delivery finds a send whose outcome the core never recorded.

    @hookimpl
    async def deliver_reply(self, session: Session, message: Message) -> Delivery:
        outgoing = self._outgoing(session, message)
        if isinstance(outgoing, Delivery):
            return outgoing
        if await self.context.state.get(f"optout:{outgoing.to}") is not None:
            return Delivery(DeliveryState.REFUSED, detail=OPTED_OUT)
        try:
            sent = await self.provider().send(outgoing.to, outgoing.body, **outgoing.sender,
                                              status_callback=self.status_url)
        except ProviderRefusal as exc:
            if exc.code == OPTED_OUT_CODE:
                return await self._opted_out_at_provider(outgoing.to, exc)
            raise
        return await self._sent(sent, message.id, outgoing.segments)

    @hookimpl
    async def reconcile_delivery(
        self, session: Session, message: Message, since: datetime
    ) -> Delivery | None:
        """The provider's message from an earlier attempt whose outcome was not recorded:
        the same body to the same number since the attempt began, not owned by another
        reply. None when the provider has none, so the core sends again."""
        outgoing = self._outgoing(session, message)
        if isinstance(outgoing, Delivery):
            return None  # nothing could have been sent
        # Listed by To and From, not by date: Twilio has no date_sent for a queued message.
        # No From for a reply through a messaging service: the pool picks the sender.
        recent = await self.provider().recent_messages(
            outgoing.to, since - CLOCK_SKEW, from_=outgoing.sender.get("from_")
        )
        for candidate in recent:
            if candidate.body != outgoing.body:
                continue
            owner = await self.context.state.get(f"sent:{candidate.sid}")
            if owner in (None, message.id):
                log.info("SMS for message %s was sent before a crash (%s): not sending again",
                         message.id, candidate.sid)
                return await self._sent(candidate, message.id, outgoing.segments)
        return None

    def _outgoing(self, session: Session, message: Message) -> Outgoing | Delivery:
        """The SMS that ``message`` becomes, or why it cannot be sent (a final Delivery).
        The same for every call with the same settings: reconciliation looks for it."""
        settings = self.settings
        to = self._recipient(session, message)
        if to is None:
            return Delivery(DeliveryState.FAILED,
                            detail="the customer has no phone number to send an SMS to")
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
        return Outgoing(to, body, parts.segments, sender)

    async def _opted_out_at_provider(self, to: str, exc: ProviderRefusal) -> Delivery:
        """The provider refused the reply because the number opted out there (its own STOP
        handling, or the carrier's): remember the opt-out, refuse this reply and later ones."""
        await self.context.state.put(f"optout:{to}",
                                     {"at": utcnow().isoformat(), "provider_code": exc.code})
        return Delivery(DeliveryState.REFUSED,
                        detail=f"{OPTED_OUT}; the provider refused the SMS: {exc}")

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

    async def _sent(self, sent: SentMessage, message_id: str, segments: int) -> Delivery:
        state = self.context.state
        # Which reply the sid is: status callbacks report to it, reconciliation skips it.
        await state.put(f"sent:{sent.sid}", message_id)
        if sent.status:
            try:
                await record_status(state, sent.sid, sent.status)
            except ValueError:
                log.info("SMS %s: provider status %r not tracked", sent.sid, sent.status)
        # A status callback that arrived before ``sent:<sid>`` was written found no owner.
        status = await state.get(f"status:{sent.sid}")
        if status:
            await report_outcome(self.context, message_id, status["status"],
                                 status.get("error_code", ""))
        return Delivery(DeliveryState.SENT, sent.sid, segments=segments)

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
            return CheckResult(self.name, False,
                               f"cannot reach {settings.base_url}: {type(exc).__name__}")
        reason = _provider_message(answer, settings.token.reveal())
        if answer.status_code == 401:
            return CheckResult(self.name, False,
                               f"the provider refused account {settings.sid} with this auth "
                               f"token (HTTP 401{reason})")
        if answer.status_code == 404:
            return CheckResult(self.name, False,
                               f"the provider does not know account {settings.sid} "
                               f"(HTTP 404{reason})")
        if answer.status_code >= 400:
            return CheckResult(self.name, False, f"HTTP {answer.status_code}{reason} from {url}")
        try:
            data = loads(answer.content)
        except ValueError:
            data = None
        if not isinstance(data, dict) or "messages" not in data:
            return CheckResult(self.name, False,
                               f"{url} did not answer with a Twilio messages list")
        return CheckResult(self.name, True, "Active")

    # -- helpers --------------------------------------------------------------------------

    @property
    def context(self) -> PluginContext:
        """The context the runner gave ``configure``; the one "not configured" guard."""
        if self._context is None:
            raise PermanentError(f"the {self.name} plugin was not configured")
        return self._context

    @property
    def settings(self) -> SmsSettings:
        """``[plugins.<name>]`` as the runner validated it."""
        settings: SmsSettings = self.context.settings
        return settings


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
