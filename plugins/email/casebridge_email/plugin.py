"""The email channel's pluggy glue: the class the ``email`` entry point names.

Inbound: :class:`~casebridge_email.smtp_server.SmtpIngest` takes mail for the support
addresses and hands it to ``PluginContext.receive`` (250 only once it is durable); ``ingest``
parses it, drops loops and floods, stores attachments and builds the message, with the session
named by a verified reply token as a hint. Outbound: ``deliver_reply`` composes a threaded
reply whose Message-ID and Reply-To carry the reply token, and sends it through the relay
(the core's delivery log makes that at most once per message id). Its bodies come from the
plugin's own templates (``templates/email/reply.*.j2``), which the TOML's ``[templates] dir``
overrides by path.

Everything of the runner the plugin uses comes through the :class:`PluginContext` that
``configure`` gives it; its name (state, logs, the channel it answers to) is the one the
TOML gives it.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
from collections.abc import Sequence
from dataclasses import replace
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus
from casebridge.plugin import (
    Address,
    AddressKind,
    Author,
    CheckResult,
    Command,
    ConfigError,
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
    hookimpl,
)

from .bounces import Bounce
from .catcher import MailCatcher
from .catcher_pages import PREFIX as CATCHER_PREFIX
from .catcher_pages import catcher_routes
from .compose import compose_reply
from .guards import SenderRateLimiter
from .imap import probe
from .mailbox import PEER_PREFIX, MailboxReader
from .reading import MailRead, ReadRules, read_mail
from .reply_bodies import TEMPLATES, reply_bodies
from .settings import EmailSettings, MailboxSettings, RelaySettings
from .smtp_client import send_email
from .smtp_server import IngestEnvelope, SmtpIngest, password_checker, raw_inbound
from .tokens import make_message_id, make_token, plus_address
from .trim_command import trim_commands

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

DEFAULT_NAME = "email"  # the entry point's; an instance's own name is ``context.name``
CHECK_TIMEOUT = 5.0
IMAP_CHECK_TIMEOUT = 10.0  # per server answer; a mailbox login takes a few round trips
# Mail received over SMTP under this size is kept raw and parsed in the outbox; a larger
# message (rare, and up to the SIZE limit) is parsed before the 250 by the path that
# streams its parts to the blob store, so the store never holds a second whole copy of it.
QUEUE_BELOW = 1 << 20
_TOKEN_KEY_LABEL = b"casebridge email reply token"
NO_RELAY = (
    "no relay configured: add [plugins.email.relay] (or [plugins.email.catcher] to keep "
    "replies on the mail catcher's page); the reply was not sent"
)


def nonce_for(message_id: str) -> str:
    """The random-looking part of our Message-ID for ``message_id``: derived, so a re-send
    of the same message carries the same Message-ID."""
    return hashlib.sha256(f"casebridge-email:{message_id}".encode()).hexdigest()[:20]


def tls_context(settings: EmailSettings, base_dir: Path) -> ssl.SSLContext | None:
    """The server-side TLS context for STARTTLS, or None when no certificate is set. Raises
    ConfigError naming the file that cannot be loaded."""
    if not settings.tls_cert:
        return None
    cert, key = base_dir / settings.tls_cert, base_dir / settings.tls_key
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"[plugins.email] tls_cert/tls_key: cannot load {cert} with {key}: {exc}"
        ) from None
    return context


class EmailPlugin:
    """The email channel. Instantiated once per runner by the entry point."""

    def __init__(self) -> None:
        self._configured: PluginContext | None = None
        self._settings = EmailSettings()
        self._limiter = SenderRateLimiter(
            self._settings.rate_limit_messages, self._settings.rate_limit_seconds
        )
        self._derived_secret: bytes | None = None
        self.catcher: MailCatcher | None = None
        self._rules: ReadRules | None = None

    # -- set-up ---------------------------------------------------------------------------

    @hookimpl
    def config_section(self) -> ConfigSection:
        return ConfigSection(DEFAULT_NAME, EmailSettings)

    @hookimpl
    def configure(self, context: PluginContext) -> None:
        settings: EmailSettings = context.settings
        self._configured = context
        self._settings = settings
        context.add_templates(TEMPLATES)
        self._limiter = SenderRateLimiter(settings.rate_limit_messages,
                                          settings.rate_limit_seconds)
        # aiosmtpd logs every SMTP line to "mail.log", AUTH answers (base64 credentials)
        # included at DEBUG: keep it to warnings whatever the bridge's level.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        self.catcher = (MailCatcher(settings.catcher, context.data_dir)
                        if settings.catcher is not None else None)
        # imapclient logs the whole IMAP conversation at DEBUG, message bodies and the
        # XOAUTH2 exchange included.
        logging.getLogger("imapclient").setLevel(logging.WARNING)

    @hookimpl
    def services(self) -> list[Service]:
        services = [self._mailbox_service(m) for m in self._settings.mailboxes]
        if self._settings.smtp_server:
            services.insert(0, self._smtp_service())
        if self.catcher is not None:
            services.append(Service(f"{self._context.name} mail catcher", self.catcher.run))
        return services

    def _mailbox_service(self, mailbox: MailboxSettings) -> Service:
        context = self._context
        reader = MailboxReader(
            mailbox, state=context.state, on_message=self._on_message,
            max_message_bytes=self._settings.max_message_bytes,
            base_dir=context.base_dir,
        )
        # One reader per mailbox across runners: two would fetch, store and flag the same
        # mail side by side (harmless, as the store refuses a second copy, but wasted).
        return Service(f"{context.name} mailbox {mailbox.label}", reader.run, singleton=True)

    def _smtp_service(self) -> Service:
        settings = self._settings
        authenticator = None
        if settings.require_auth and settings.auth_password is not None:
            authenticator = password_checker(settings.auth_username, settings.auth_password)
        server = SmtpIngest(
            host=settings.listen_host,
            port=settings.listen_port,
            accepts=settings.accepts,
            max_size=settings.max_message_bytes,
            max_line_length=settings.max_line_bytes,
            on_message=self._on_message,
            tls_context=tls_context(settings, self._context.base_dir),
            require_starttls=settings.require_starttls,
            authenticator=authenticator,
            # Settings allow AUTH without TLS only on loopback (a local forwarding source).
            auth_require_tls=bool(settings.tls_cert),
        )

        async def run(*, task_status: TaskStatus[Any] = anyio.TASK_STATUS_IGNORED) -> None:
            await server.run(task_status=task_status)

        return Service(f"{self._context.name} SMTP server", run)

    @hookimpl
    def addresses(self) -> list[Address]:
        settings = self._settings
        to = settings.support_addresses[0] if settings.support_addresses else ""
        found = [Address("Customer email in (SMTP)",
                         f"{settings.listen_host}:{settings.listen_port}",
                         f"to {to}" if to else "")]
        if self.catcher is not None:
            found.append(Address("Mail catcher", self.catcher_url(self._context.public_url),
                                 f"replies sent to SMTP {self.catcher.settings.host}:"
                                 f"{self.catcher.port}"))
        return found

    @hookimpl
    def http_routes(self) -> list[BaseRoute]:
        if self.catcher is None:
            return []
        where = f"{self.catcher.settings.host}:{self.catcher.settings.port}"
        return catcher_routes(self.catcher.store, where)

    def catcher_url(self, public_url: str) -> str:
        """The mail catcher's page under the bridge's ``public_url`` ("" when it is off)."""
        return f"{public_url.rstrip('/')}{CATCHER_PREFIX}" if self.catcher is not None else ""

    @hookimpl
    def cli_commands(self) -> list[Command]:
        return trim_commands()

    @hookimpl
    async def check(self) -> CheckResult:
        context, settings = self._context, self._settings
        name = context.name
        blocking = [p for p in settings.missing() if not p.startswith("reply_token_secret")]
        if blocking:
            return CheckResult(name, False, "; ".join(blocking))
        try:
            tls_context(settings, context.base_dir)
        except ConfigError as exc:
            return CheckResult(name, False, str(exc))
        # Bounded like the relay check: an unreachable host must not stall `casebridge check`.
        mailboxes = [await anyio.to_thread.run_sync(
                         probe, replace(m, timeout=min(m.timeout, IMAP_CHECK_TIMEOUT)),
                         context.base_dir)
                     for m in settings.mailboxes]
        notes = [detail for _, detail in mailboxes]
        if not all(ok for ok, _ in mailboxes):
            return CheckResult(name, False, "; ".join(notes))
        relay = settings.relay
        if relay is None and settings.catcher is not None:
            catcher = settings.catcher
            return CheckResult(name, True, "; ".join([
                f"Active (replies go to the mail catcher on {catcher.host}:{catcher.port}, "
                f"shown at {self.catcher_url(context.public_url)}; it starts with run)",
                *notes]))
        if relay is None:
            return CheckResult(name, False, "; ".join([NO_RELAY, *notes]))
        problem = await _unreachable(relay)
        if problem:
            return CheckResult(name, False, "; ".join([problem, *notes]))
        return CheckResult(name, True, "; ".join(["Active", *notes]))

    # -- inbound --------------------------------------------------------------------------

    async def _on_message(self, envelope: IngestEnvelope) -> None:
        raw = raw_inbound(envelope, self._context.name)
        if 0 < len(envelope.data) < QUEUE_BELOW:
            # Kept raw and parsed in the outbox: the 250 costs one commit, so a burst is
            # taken at the pace of the disk, not of the parser (see casebridge.receiving).
            await self._context.receive_later(raw)
        else:
            await self._context.receive(raw)

    @hookimpl
    async def ingest(self, raw: RawInbound) -> Inbound:
        """Parse one received mail: drop loops (auto-replies, bounces, machine senders, our
        own mail) and floods, store its attachments, build the customer's message."""
        if not raw.payload:
            raise PermanentError("an email inbound without message bytes")
        read = await self._read(raw, store_parts=False)
        if read.message is None and not read.parts_pending:
            if read.bounce is not None:
                await self._note_bounce(read.bounce)
            return Inbound(None, dropped=read.dropped)
        settings = self._settings
        if not self._limiter.allow(read.sender):
            return Inbound(
                None,
                dropped=(f"rate limit: over {settings.rate_limit_messages} messages in "
                         f"{settings.rate_limit_seconds:g}s from {read.sender}"),
            )
        if read.parts_pending:  # within the limit: now its attachments may be stored
            read = await self._read(raw, store_parts=True)
        assert read.message is not None
        # The channel is this instance's name, so its replies come back to it.
        return Inbound(replace(read.message, channel=self._context.name),
                       contact_name=read.from_name, sender_kind=AddressKind.EMAIL)

    async def _read(self, raw: RawInbound, *, store_parts: bool) -> MailRead:
        # Never on the event loop: however a message is built, SMTP, HTTP and the outbox keep
        # answering meanwhile (the bounds in mime and html_depth keep the work itself short).
        # An ordinary mail goes to a worker process, on another core; a large one is read in
        # a thread, which streams its parts from the bytes already in memory instead of
        # copying them to a process.
        rules = self._read_rules()
        if len(raw.payload) < QUEUE_BELOW:
            return await self._context.run_cpu(read_mail, raw, rules, store_parts)
        return await anyio.to_thread.run_sync(read_mail, raw, rules, store_parts)

    def _read_rules(self) -> ReadRules:
        if self._rules is None:
            settings = self._settings
            self._rules = ReadRules(
                support_addresses=tuple(settings.support_addresses),
                support_domains=tuple(settings.support_domains),
                our_domains=tuple(self._our_domains()),
                bounce_domain=settings.our_message_id_domain,
                keep_signature=settings.keep_signature,
                token_secret=self._token_secret(),
                blob_folder=self._context.blobs.folder,
                max_attachment_bytes=settings.max_attachment_bytes,
                max_attachments=settings.max_attachments,
                mailbox_peer_prefix=PEER_PREFIX,
            )
        return self._rules

    async def _note_bounce(self, bounce: Bounce) -> None:
        """A bounce of one of our replies: the reply failed, and the rep should know."""
        context = self._context
        for our_id in bounce.message_ids:
            owner = await context.state.get(f"msgid:{our_id}")
            if isinstance(owner, str):
                context.log.info("reply %s bounced: %s", owner, bounce.reason)
                await context.report_delivery(
                    owner, "failed", f"the customer's mail server returned it ({bounce.reason})")

    def _our_domains(self) -> list[str]:
        settings = self._settings
        return [d for d in (settings.our_message_id_domain, *settings.support_domains) if d]

    # -- outbound -------------------------------------------------------------------------

    @hookimpl
    async def deliver_reply(
        self, session: Session, message: Message, transcript: Sequence[Message]
    ) -> Delivery:
        """Send ``message`` as a threaded reply through the relay, once per call.

        At most once per ``message.id`` is the core's (``casebridge.delivery_log``). A relay
        that took the data but never confirmed raises AmbiguousWriteError: a relay cannot be
        asked afterwards, so the core marks such a reply failed rather than send it twice.
        """
        try:
            email = await self._compose(session, message, transcript)
        except ValueError as exc:
            # A recipient that is no e-mail address fails the same way every time.
            return Delivery(DeliveryState.FAILED, detail=str(exc))
        our_id = str(email["Message-ID"]).strip("<>")
        relay = self._settings.outgoing_relay
        if relay is None:
            # A configuration error, not an outage: retrying cannot help.
            return Delivery(DeliveryState.FAILED, detail=NO_RELAY)
        # Shielded: a shutdown mid-send waits for the relay's answer (bounded by its
        # timeouts) rather than leave a send whose fate nobody knows.
        with anyio.CancelScope(shield=True):
            try:
                await send_email(email, relay=relay, envelope_from=self._from_address())
            except PermanentError as exc:
                return Delivery(DeliveryState.FAILED, external_id=our_id, detail=str(exc))
            # So a bounce quoting our Message-ID finds the reply it returns, and later
            # replies thread under the ones that went out.
            await self._context.state.put(f"msgid:{our_id}", message.id)
        return Delivery(DeliveryState.SENT, external_id=our_id)

    async def _compose(
        self, session: Session, message: Message, transcript: Sequence[Message]
    ) -> EmailMessage:
        context, settings = self._context, self._settings
        from_addr = self._from_address()
        domain = settings.our_message_id_domain
        if not from_addr or not domain:
            raise PermanentError(
                "[plugins.email] has no from_address or support address to send replies from"
            )
        token = make_token(session.id, self._token_secret())
        customer = [m for m in transcript
                    if m.author is Author.CUSTOMER and m.direction is Direction.INBOUND
                    and m.channel == context.name and not m.external_id.startswith("sha256:")]
        in_reply_to = customer[-1].external_id if customer else None
        references = await self._thread_ids(transcript, message, token, domain)
        text, html = reply_bodies(context.render, message, session)
        return compose_reply(
            from_addr=from_addr,
            from_name=settings.from_name,
            to_addr=message.recipients[0] if message.recipients else "",
            subject=session.subject,
            text=text,
            html=html or None,
            in_reply_to=in_reply_to,
            references=[r for r in references if r != in_reply_to],
            message_id=make_message_id(token, domain, nonce_for(message.id)),
            auto_submitted=message.author in (Author.ASSISTANT, Author.SYSTEM),
            reply_to=plus_address(from_addr, token),
        )

    async def _thread_ids(
        self, transcript: Sequence[Message], current: Message, token: str, domain: str
    ) -> list[str]:
        """The Message-IDs of the conversation so far, oldest first: the customer's, what the
        customer's first mail referred to, and the replies we actually sent."""
        context = self._context
        ids: list[str] = []
        for m in transcript:
            if m.id == current.id or m.channel != context.name:
                continue
            if m.direction is Direction.INBOUND:
                if not ids:
                    ids.extend(m.thread_refs)
                if not m.external_id.startswith("sha256:"):
                    ids.append(m.external_id)
            else:
                # One of our replies: in the thread when it went out (``msgid:`` recorded).
                sent_id = make_message_id(token, domain, nonce_for(m.id)).strip("<>")
                if await context.state.get(f"msgid:{sent_id}") is not None:
                    ids.append(sent_id)
        return list(dict.fromkeys(ids))

    def _from_address(self) -> str:
        return self._settings.sender_address

    # -- helpers --------------------------------------------------------------------------

    @property
    def _context(self) -> PluginContext:
        """The runner, as ``configure`` gave it: the one guard for every hook that needs it."""
        if self._configured is None:
            raise PermanentError("the email plugin is not configured: the runner has not "
                                 "called its configure hook")
        return self._configured

    def _token_secret(self) -> bytes:
        configured = self._settings.reply_token_secret
        if configured is not None:
            return configured.reveal().encode()
        if self._derived_secret is None:
            # A key of its own, so a reply token never doubles as a session-link signature.
            self._derived_secret = self._context.derived_key(_TOKEN_KEY_LABEL)
        return self._derived_secret


async def _unreachable(relay: RelaySettings) -> str:
    """Why a TCP connection to the relay fails ("" when it opens)."""
    timeout = min(relay.timeout, CHECK_TIMEOUT)
    try:
        with anyio.fail_after(timeout):
            stream = await anyio.connect_tcp(relay.host, relay.port)
    except TimeoutError:
        return f"relay {relay.host}:{relay.port} did not answer within {timeout:g}s"
    except OSError as exc:
        return f"relay {relay.host}:{relay.port} is unreachable: {exc.strerror or exc}"
    await stream.aclose()
    return ""
