"""The SMTP server that receives customer mail (aiosmtpd, on the caller's asyncio loop).

It is never an open relay: it accepts only the recipients ``accepts`` allows (550 for the
rest). It advertises and enforces SIZE (552). Message lines may be far longer than RFC 5321's
1,000 octets (real mail breaks that limit; a 5xx for it would lose the customer's message):
up to ``max_line_length``, above which the message is refused with 552 naming the limit. It
answers 250 only once ``on_message`` has returned, that is once the message is durable;
``PermanentError`` from ``on_message`` answers 554 and any other exception 451 (the sender's
server tries again later).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import socket
import ssl
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session, syntax
from anyio.abc import TaskStatus
from casebridge.plugin import PermanentError, RawInbound, Secret

from .envelope import envelope_fields
from .smtp_data import DataSection, DataState

log = logging.getLogger(__name__)

# Postfix takes lines of any length (it folds past line_length_limit); this is a bound on the
# memory one line may hold while it is read, far above what any mail client writes.
DEFAULT_MAX_LINE = 64 * 1024
# "<local@domain>" where both are dot-atoms (RFC 5321 §4.1.2) and the parameters after it:
# the form nearly every client sends, which aiosmtpd's own parser reads the same way.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_SIMPLE_ADDRESS = re.compile(
    rf"[ \t]*<(?P<address>{_DOT_ATOM}@{_DOT_ATOM})>(?:[ \t]+(?P<rest>.*))?", re.DOTALL)

# What aiosmtpd answers, at the end of DATA, for a line over its stream limit.
_AIOSMTPD_TOO_LONG = "500 Line too long"


@dataclass(frozen=True, slots=True)
class IngestEnvelope:
    """One message as the SMTP server received it. ``mail_from`` is "" for the null sender
    (bounces); ``peer`` is "host:port" of the client."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes = field(repr=False)
    peer: str = ""


def raw_inbound(envelope: IngestEnvelope, channel: str) -> RawInbound:
    """The core's view of one received message: its bytes, and its envelope as fields."""
    return RawInbound(
        channel=channel,
        payload=envelope.data,
        fields=envelope_fields(envelope.mail_from, envelope.rcpt_tos),
        sender=envelope.mail_from,
        peer=envelope.peer,
    )


def password_checker(username: str, password: Secret) -> Callable[[str, str], bool]:
    """An ``authenticator`` for :class:`SmtpIngest` accepting one user (constant-time)."""

    def check(user: str, given: str) -> bool:
        user_ok = hmac.compare_digest(user.encode(), username.encode())
        password_ok = hmac.compare_digest(given.encode(), password.reveal().encode())
        return user_ok and password_ok

    return check


def _reply_text(text: str) -> str:
    # One short ASCII line: an SMTP reply cannot carry CR/LF and some clients choke on 8-bit.
    flat = " ".join(text.split())
    return flat.encode("ascii", "replace").decode("ascii")[:300] or "rejected"


class _Handler:
    def __init__(
        self,
        accepts: Callable[[str], bool],
        on_message: Callable[[IngestEnvelope], Awaitable[None]],
        authenticator: Callable[[str, str], bool] | None,
    ) -> None:
        self._accepts = accepts
        self._on_message = on_message
        self._authenticator = authenticator

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # the hook's duty, per aiosmtpd
        if self._authenticator is None:
            # aiosmtpd offers its built-in AUTH mechanisms even with nothing to check them
            # against; a server that takes no logins must not advertise any.
            responses = [r for r in responses if not r.startswith("250-AUTH")]
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if not self._accepts(address):
            log.info("refused recipient %s from %s", address, _peer(session))
            return f"550 5.7.1 <{_reply_text(address)}>: recipient not accepted here (no relay)"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        mail_from = envelope.mail_from or ""
        ingest = IngestEnvelope(
            mail_from="" if mail_from == "<>" else mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data,
            peer=_peer(session),
        )
        try:
            await self._on_message(ingest)
        except PermanentError as exc:
            log.warning("refused message from %s: %s", ingest.peer, exc)
            return f"554 5.6.0 {_reply_text(str(exc))}"
        except Exception:
            log.exception("could not store message from %s; asked the sender to retry", ingest.peer)
            return "451 4.3.0 temporary failure storing the message, try again later"
        return "250 2.0.0 OK: queued"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if self._authenticator is None or not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        try:
            user = data.login.decode("utf-8")
            password = data.password.decode("utf-8")
        except UnicodeDecodeError:
            return AuthResult(success=False, handled=False)
        ok = self._authenticator(user, password)
        if not ok:
            log.warning("failed SMTP login from %s", _peer(session))
        return AuthResult(success=ok, handled=False)


class _FairReader:
    """A connection's stream reader that lets the event loop run between lines.

    aiosmtpd reads DATA line by line, and ``readuntil`` does not wait while its buffer holds
    a whole line: a fast client's megabyte is then read in steps of hundreds of kilobytes
    during which no other connection (HTTP, another SMTP client) is served. This yields once
    per ``PACE`` bytes read. Every other attribute is the wrapped reader's.
    """

    PACE = 16 * 1024

    def __init__(self, reader: asyncio.StreamReader) -> None:
        object.__setattr__(self, "_reader", reader)
        object.__setattr__(self, "_unyielded", 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._reader, name, value)  # aiosmtpd sets _transport on STARTTLS

    async def _pace(self, data: bytes) -> bytes:
        unyielded = self._unyielded + len(data)
        if unyielded >= self.PACE:
            unyielded = 0
            await asyncio.sleep(0)
        object.__setattr__(self, "_unyielded", unyielded)
        return data

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        return await self._pace(await self._reader.readuntil(separator))

    async def readline(self) -> bytes:
        return await self._pace(await self._reader.readline())

    async def read(self, n: int = -1) -> bytes:
        return await self._pace(await self._reader.read(n))

    async def readexactly(self, n: int) -> bytes:
        return await self._pace(await self._reader.readexactly(n))


class _Smtp(SMTP):
    """aiosmtpd's protocol, registered in ``sessions`` while its connection is open, with
    lines up to ``max_line`` bytes."""

    def __init__(
        self, handler: _Handler, *, sessions: set[SMTP], max_line: int, **kwargs: Any
    ) -> None:
        # aiosmtpd reads its class attribute ``line_length_limit`` (1001) both as the stream
        # reader's limit (set in __init__) and when checking DATA lines: an instance value
        # set before __init__ raises both. Commands keep their own 512-byte limit.
        self.line_length_limit = max_line
        super().__init__(handler, **kwargs)
        self._registry = sessions
        sessions.add(self)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd parses every MAIL FROM and RCPT TO with the email package's header
        # parser (and defines a class per call): some 100 us of an SMTP transaction. The
        # everyday <local@domain> is read here; anything else still goes to aiosmtpd.
        simple = _SIMPLE_ADDRESS.fullmatch(arg)
        if simple is None:
            return super()._getaddr(arg)
        address = simple["address"]
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, simple["rest"] or ""

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, reading the message in blocks up to each ``.\r\n`` (see
        smtp_data) instead of one awaited read per line; the same checks, answers and
        limits."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        section = DataSection(self.data_size_limit, self.line_length_limit)
        reader = self._reader
        while self.transport is not None:  # eof_received cancels this coroutine
            try:
                block = await reader.readuntil(b".\r\n")
            except asyncio.LimitOverrunError as exc:
                # No ".\r\n" within the reader's limit: take what comes before it.
                block = await reader.readexactly(exc.consumed)
            except asyncio.CancelledError:
                log.info("connection lost during DATA")
                self._writer.close()
                raise
            if section.feed(block):
                break
        else:
            return
        if section.state is DataState.TOO_LONG:
            await self.push(_AIOSMTPD_TOO_LONG + " (see RFC5321 4.5.3.1.6)")
        elif section.state is DataState.TOO_MUCH:
            await self.push("552 Error: Too much mail data")
        else:
            self.envelope.content = self.envelope.original_content = section.content()
            status = await self._call_handler_hook("DATA")
            self._set_post_data_state()
            await self.push("250 OK" if status is MISSING else status)
            return
        self._set_post_data_state()

    async def push(self, status: str | bytes) -> None:
        # aiosmtpd's answer to an over-long DATA line is a permanent 500 with RFC 5321's
        # reason; ours is 552 (a message-size refusal) naming the limit actually applied.
        text = status.decode("ascii", "replace") if isinstance(status, bytes) else status
        if text.startswith(_AIOSMTPD_TOO_LONG):
            log.warning("refused message from %s: a line over %d bytes", _peer(self.session),
                        self.line_length_limit)
            status = (f"552 5.3.4 Message refused: it has a line longer than the "
                      f"{self.line_length_limit}-byte limit")
        await super().push(status)

    def _cb_client_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # aiosmtpd's own hook for the connection's streams (it keeps them as _reader and
        # _writer); the reader is wrapped to share the loop fairly.
        super()._cb_client_connected(_FairReader(reader), writer)  # type: ignore[arg-type]

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            self._registry.discard(self)


def _peer(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer or "")


class SmtpIngest:
    """An SMTP server for inbound mail. Run it with ``await ingest.run(task_status=...)``.

    ``accepts`` decides which recipients are ours. ``max_size`` is the largest message in
    bytes, ``max_line_length`` the longest line in it. ``tls_context`` enables STARTTLS,
    ``require_starttls`` insists on it. With an ``authenticator`` (user, password) -> bool
    every client must log in (AUTH LOGIN/PLAIN), only over TLS unless ``auth_require_tls``
    is False.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        accepts: Callable[[str], bool],
        max_size: int,
        max_line_length: int = DEFAULT_MAX_LINE,
        on_message: Callable[[IngestEnvelope], Awaitable[None]],
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        authenticator: Callable[[str, str], bool] | None = None,
        auth_require_tls: bool = True,
        hostname: str | None = None,
        timeout: float = 300.0,
    ) -> None:
        if require_starttls and tls_context is None:
            raise ValueError("require_starttls needs a tls_context")
        if max_size < 1:
            raise ValueError("max_size must be positive")
        if max_line_length < 1001:
            raise ValueError("max_line_length must be at least RFC 5321's 1001")
        self.host = host
        self.port = port
        self._handler = _Handler(accepts, on_message, authenticator)
        self._max_size = max_size
        self._max_line = max_line_length
        self._tls_context = tls_context
        self._require_starttls = require_starttls
        self._auth = authenticator is not None
        self._auth_require_tls = auth_require_tls
        self._hostname = hostname or socket.gethostname()
        self._timeout = timeout
        self._sessions: set[SMTP] = set()

    def _protocol(self) -> SMTP:
        with warnings.catch_warnings():
            # aiosmtpd warns on every connection when AUTH may go without TLS; the caller
            # chose that (a loopback forwarding source) and it was checked at configuration.
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            return self._new_session()

    def _new_session(self) -> SMTP:
        return _Smtp(
            self._handler,
            sessions=self._sessions,
            max_line=self._max_line,
            data_size_limit=self._max_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self._hostname,
            ident="casebridge ESMTP",
            tls_context=self._tls_context,
            require_starttls=self._require_starttls,
            timeout=self._timeout,
            auth_required=self._auth,
            auth_require_tls=self._auth_require_tls,
            authenticator=self._handler.authenticate if self._auth else None,
            loop=asyncio.get_running_loop(),
        )

    async def run(self, *, task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
        """Bind, report the bound port through ``task_status.started(port)``, serve until
        cancelled, then close the listener and every open connection."""
        loop = asyncio.get_running_loop()
        server = await loop.create_server(self._protocol, self.host, self.port)
        port = server.sockets[0].getsockname()[1]
        log.info("SMTP server listening on %s:%s", self.host, port)
        try:
            task_status.started(port)
            await anyio.sleep_forever()
        finally:
            server.close()
            with anyio.CancelScope(shield=True):
                await self._close_sessions()
                await server.wait_closed()
            log.info("SMTP server on %s:%s stopped", self.host, port)

    async def _close_sessions(self) -> None:
        tasks = []
        for smtp in list(self._sessions):
            if smtp.transport is not None:
                smtp.transport.close()
            task = getattr(smtp, "_handler_coroutine", None)
            if isinstance(task, asyncio.Task) and not task.done():
                task.cancel()
                tasks.append(task)
        self._sessions.clear()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
