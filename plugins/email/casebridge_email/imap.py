"""One blocking IMAP connection to a mailbox (imapclient), for the reader to drive from a
worker thread. Every call blocks for at most the configured timeout (IDLE waits included),
so the reader can stop between calls; any failure surfaces as an exception and the reader
reconnects.

imapclient rather than aioimaplib: it parses SELECT, SEARCH and FETCH answers into Python
values, has XOAUTH2, STARTTLS and MOVE built in, and its socket timeouts bound every call;
aioimaplib hands back raw response lines, and its ``idle_start`` can hang when the server
closes the connection (iroco-co/aioimaplib#110), which is exactly the restart this reader
must survive.
"""

from __future__ import annotations

import contextlib
import io
import select
import socket
import ssl
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casebridge.plugin import ConfigError
from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import LoginError
from imapclient.imapclient import _parse_untagged_response

from .settings import MailboxSettings

SEEN = b"\\Seen"
TOKEN_COMMAND_TIMEOUT = 30.0
CLOSE_TIMEOUT = 2.0


class ConnectionLost(ConnectionError):
    """The server closed the connection (BYE, or end of stream while idling)."""


@dataclass(frozen=True, slots=True)
class FolderStatus:
    uidvalidity: int
    uidnext: int
    exists: int


@dataclass(frozen=True, slots=True)
class Fetched:
    uid: int
    data: bytes


def client_tls_context(settings: MailboxSettings, base_dir: Path) -> ssl.SSLContext | None:
    """The verifying TLS context for a mailbox (None for ``tls = "none"``). Raises
    ConfigError naming a ``ca_file`` that cannot be loaded."""
    if settings.tls == "none":
        return None
    if not settings.ca_file:
        return ssl.create_default_context()
    path = base_dir / settings.ca_file
    try:
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"mailbox {settings.label}: ca_file: cannot load {path}: {exc}") from None


def access_token(settings: MailboxSettings, base_dir: Path) -> str:
    """The OAuth2 access token, read now (a sidecar may have refreshed it). Raises
    ConfigError naming the file or command, never the token."""
    if settings.oauth2_token_file:
        path = base_dir / settings.oauth2_token_file
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"mailbox {settings.label}: cannot read oauth2_token_file {path}: {exc.strerror}"
            ) from None
        where = f"oauth2_token_file {path}"
    else:
        command = settings.oauth2_token_command
        try:
            done = subprocess.run(  # noqa: S603 - the operator's own configured command
                command,
                capture_output=True,
                timeout=TOKEN_COMMAND_TIMEOUT,
                check=False,
                cwd=base_dir,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigError(
                f"mailbox {settings.label}: oauth2_token_command {command[0]!r} failed: {exc}"
            ) from None
        if done.returncode != 0:
            # Its output may hold a token or a secret: report only the status.
            raise ConfigError(
                f"mailbox {settings.label}: oauth2_token_command {command[0]!r} "
                f"exited with status {done.returncode}"
            )
        token = done.stdout.decode("utf-8", "replace").strip()
        where = f"oauth2_token_command {command[0]!r}"
    if not token:
        raise ConfigError(f"mailbox {settings.label}: {where} gave an empty token")
    return token


class ImapConnection:
    """A logged-in connection with the watched folder selected. Not thread-safe: one
    caller at a time (the reader uses it from one worker thread at a time)."""

    def __init__(self, settings: MailboxSettings, base_dir: Path) -> None:
        self.settings = settings
        self._base_dir = base_dir
        self._client: IMAPClient | None = None
        self._idling = False

    # -- session --------------------------------------------------------------------------

    def open(self) -> None:
        """Connect, secure, log in. Raises LoginError for refused credentials."""
        s = self.settings
        context = client_tls_context(s, self._base_dir)
        client = IMAPClient(
            s.host,
            port=s.port,
            ssl=s.tls == "tls",
            ssl_context=context,
            timeout=SocketTimeout(connect=s.timeout, read=s.timeout),
        )
        try:
            _keep_alive(client.socket())
            if s.tls == "starttls":
                client.starttls(context)
            if s.password is not None:
                client.login(s.username, s.password.reveal())
            else:
                client.oauth2_login(s.username, access_token(s, self._base_dir))
        except BaseException:
            _quietly(client.shutdown)
            raise
        self._client = client

    def close(self) -> None:
        """Leave IDLE and log out if the server still answers; drop the socket anyway."""
        client, self._client = self._client, None
        if client is None:
            return
        # A dead peer must not hold a shutdown for the whole read timeout.
        _quietly(lambda: client.socket().settimeout(CLOSE_TIMEOUT))
        if self._idling:
            self._idling = False
            _quietly(client.idle_done)
        _quietly(client.logout)
        _quietly(client.shutdown)

    @property
    def client(self) -> IMAPClient:
        if self._client is None:
            raise ConnectionLost("not connected")
        return self._client

    def offers_idle(self) -> bool:
        return self.client.has_capability("IDLE")

    def folder_exists(self, folder: str) -> bool:
        return bool(self.client.folder_exists(folder))

    def select(self) -> FolderStatus:
        info = self.client.select_folder(self.settings.folder)
        self.announced_new()  # what SELECT itself reported is in ``info``
        return FolderStatus(
            uidvalidity=int(info[b"UIDVALIDITY"]),
            uidnext=int(info.get(b"UIDNEXT", 0)),
            exists=int(info.get(b"EXISTS", 0)),
        )

    # -- reading and acknowledging ---------------------------------------------------------

    def search(self, criteria: list[str]) -> list[int]:
        return [int(u) for u in self.client.search(criteria)]

    def sizes(self, uids: list[int]) -> list[tuple[int, int]]:
        """``(uid, RFC822.SIZE)`` of the messages still there, in UID order."""
        if not uids:
            return []
        found = self.client.fetch(uids, [b"RFC822.SIZE"])
        return sorted((int(uid), int(data[b"RFC822.SIZE"])) for uid, data in found.items())

    def fetch(self, uids: list[int]) -> list[Fetched]:
        """The raw bytes of ``uids`` in UID order; PEEK, so nothing is flagged by reading."""
        if not uids:
            return []
        found = self.client.fetch(uids, [b"BODY.PEEK[]"])
        return sorted(
            (
                Fetched(int(uid), bytes(data[b"BODY[]"]))
                for uid, data in found.items()
                if b"BODY[]" in data
            ),
            key=lambda f: f.uid,
        )

    def acknowledge(self, uids: list[int]) -> None:
        """Flag ``uids`` \\Seen or move them to ``move_to``, as configured."""
        if not uids:
            return
        client = self.client
        if self.settings.after == "seen":
            client.add_flags(uids, [SEEN], silent=True)
        elif client.has_capability("MOVE"):
            client.move(uids, self.settings.move_to)
        else:
            client.copy(uids, self.settings.move_to)
            client.delete_messages(uids, silent=True)
            if client.has_capability("UIDPLUS"):
                client.uid_expunge(uids)
            else:
                client.expunge()

    def noop(self) -> None:
        self.client.noop()

    def announced_new(self) -> bool:
        """Whether the server announced new mail (untagged EXISTS) alongside the answers to
        the commands since the last call. Such an announcement is made once: a message that
        arrived during a SEARCH is reported with its answer, not again to a later IDLE.
        imapclient leaves these in imaplib's ``untagged_responses``, which it does not wrap."""
        untagged = getattr(getattr(self.client, "_imap", None), "untagged_responses", None)
        if not isinstance(untagged, dict):
            return True  # cannot tell: assume there is, and search once more
        return bool(untagged.pop("EXISTS", None)) | bool(untagged.pop("RECENT", None))

    # -- IDLE -----------------------------------------------------------------------------

    def idle_start(self) -> None:
        self.client.idle()
        self._idling = True

    def idle_wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` in IDLE; True when the server reported a change. Raises
        ConnectionLost when the server said BYE or closed the connection (imapclient's
        ``idle_check`` alone returns nothing then, the same as a quiet timeout)."""
        client = self.client
        sock = client.socket()
        responses = self._buffered_responses()
        if not responses:
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            if not pending:
                poller = select.poll()
                poller.register(sock.fileno(), select.POLLIN)
                if not poller.poll(max(0.0, seconds) * 1000):
                    return False
            responses = client.idle_check(timeout=0)
        if not responses:
            raise ConnectionLost("the server closed the connection while idling")
        if any(r[:1] == (b"BYE",) or (len(r) > 1 and r[1] == b"BYE") for r in responses):
            raise ConnectionLost("the server said BYE while idling")
        # "* OK Still here" keep-alives are no change; EXISTS, RECENT, EXPUNGE, FETCH are.
        return any(r[:1] != (b"OK",) for r in responses)

    def _buffered_responses(self) -> list[Any]:
        """Whole lines imaplib already read off the socket but nobody has parsed: reading
        "+ idling" can pull a "* 3 EXISTS" sent right after it into the same buffer, and a
        poll of the socket then waits for data that already came (seen with Dovecot)."""
        buffer = getattr(getattr(self.client, "_imap", None), "file", None)
        if not isinstance(buffer, io.BufferedReader):
            return []
        sock = self.client.socket()
        timeout = sock.gettimeout()
        sock.setblocking(False)  # so peek reads only what is buffered or already arrived
        try:
            responses = []
            while True:
                try:
                    whole_line = b"\n" in buffer.peek(1)
                except (ssl.SSLWantReadError, BlockingIOError):
                    whole_line = False  # nothing buffered and nothing arrived
                if not whole_line:
                    return responses
                line = self.client._imap._get_line()
                responses.append(_parse_untagged_response(line))
        finally:
            sock.settimeout(timeout)

    def idle_done(self) -> None:
        if self._idling:
            self._idling = False
            self.client.idle_done()


def probe(settings: MailboxSettings, base_dir: Path) -> tuple[bool, str]:
    """For ``casebridge check``: can it log in, does the folder (and ``move_to``) exist, is
    IDLE offered. Returns ``(ok, detail)``; blocking, bounded by the mailbox's timeout."""
    connection = ImapConnection(settings, base_dir)
    label = settings.label
    try:
        connection.open()
    except LoginError as exc:
        return False, f"mailbox {label}: login refused: {_server_text(exc)}"
    except ConfigError as exc:
        return False, str(exc)
    except (OSError, ssl.SSLError) as exc:
        return False, f"mailbox {label}: cannot connect: {exc}"
    try:
        if not connection.folder_exists(settings.folder):
            return False, (
                f"mailbox {label}: logged in, but folder {settings.folder!r} does not exist"
            )
        if settings.move_to and not connection.folder_exists(settings.move_to):
            return False, (
                f"mailbox {label}: logged in, but move_to folder "
                f"{settings.move_to!r} does not exist"
            )
        idle = connection.offers_idle()
    except Exception as exc:
        return False, f"mailbox {label}: logged in, then failed: {exc}"
    finally:
        connection.close()
    if idle:
        how = "IDLE offered" if settings.idle else "IDLE offered but off: polling"
    else:
        how = f"no IDLE: polling every {settings.poll_seconds:g}s"
    return True, f"mailbox {label}: logged in, folder exists, {how}"


def _keep_alive(sock: socket.socket) -> None:
    """TCP keepalive probes, so a connection whose peer vanished without a word (a NAT or
    firewall dropping it) fails within minutes even while it idles, not after the next
    IDLE renewal and a read timeout."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
        option = getattr(socket, name, None)
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def _server_text(exc: Exception) -> str:
    # LoginError carries the server's answer (e.g. "[AUTHENTICATIONFAILED] ..."), not ours.
    text = str(exc.args[0] if exc.args else exc)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text[:200]


def _quietly(action: Callable[[], object]) -> None:
    # Best-effort cleanup of a connection that is being dropped anyway.
    with contextlib.suppress(Exception):
        action()
