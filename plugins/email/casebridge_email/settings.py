"""``[plugins.email]``: the email channel's configuration section.

Example::

    [plugins.email]
    support_addresses = ["support@example.com"]
    reply_token_secret = {env = "CASEBRIDGE_EMAIL_TOKEN_SECRET"}

    [plugins.email.relay]
    host = "smtp.example.com"
    port = 587
    tls = "starttls"
    username = "bridge@example.com"
    password = {env = "CASEBRIDGE_SMTP_PASSWORD"}

    [[plugins.email.mailboxes]]        # read a mailbox over IMAP (docs/email.md)
    host = "imap.example.com"
    username = "support@example.com"
    password = {env = "CASEBRIDGE_IMAP_PASSWORD"}
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from casebridge.plugin import Secret

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """``[plugins.email.relay]``: the SMTP server replies are sent through.

    ``tls``: "tls" connects with TLS (port 465), "starttls" upgrades a plain connection
    (port 587), "none" sends in the clear (a local relay only). ``timeout`` in seconds.
    ``ca_file`` (PEM) replaces the system's trusted CAs, for a relay with a private CA.
    """

    host: str = "127.0.0.1"
    port: int = 25
    tls: Literal["none", "starttls", "tls"] = "none"
    username: str = ""
    password: Secret | None = None
    timeout: float = 30.0
    ca_file: str = ""

    def __post_init__(self) -> None:
        if not self.host.strip():
            raise ValueError("relay.host is empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"relay.port {self.port} is not a TCP port")
        if self.timeout <= 0:
            raise ValueError("relay.timeout must be positive")
        if bool(self.username) != bool(self.password):
            raise ValueError("relay.username and relay.password go together: set both or neither")
        if self.ca_file and self.tls == "none":
            raise ValueError('relay.ca_file is set but relay.tls is "none"')


@dataclass(frozen=True, slots=True)
class CatcherSettings:
    """``[plugins.email.catcher]``: the embedded outgoing-mail catcher, a developer's relay.

    An SMTP server on ``host``:``port`` (loopback only: it takes mail for anyone) that keeps
    every message it receives in the data folder (``folder``, at most ``max_messages``, the
    oldest dropped first) and shows them on the bridge's ``/mail`` pages. With no
    ``[plugins.email.relay]`` table, replies are sent to it.
    """

    host: str = "127.0.0.1"
    port: int = 1025
    folder: str = "mail-catcher"
    max_messages: int = 1000
    max_message_bytes: int = 25 * MB

    def __post_init__(self) -> None:
        if not _is_loopback(self.host):
            raise ValueError(
                f"catcher.host {self.host!r} is not a loopback address: the catcher keeps "
                "mail for any recipient, so it listens on 127.0.0.1 or ::1 only"
            )
        if not 0 <= self.port < 65536:
            raise ValueError(f"catcher.port {self.port} is not a TCP port")
        folder = self.folder.strip()
        if not folder or folder.startswith(("/", "\\")) or ".." in folder.split("/"):
            raise ValueError(f"catcher.folder {self.folder!r} must be a folder name inside "
                             "the data folder")
        if self.max_messages < 1 or self.max_message_bytes < 1:
            raise ValueError("catcher.max_messages and catcher.max_message_bytes must be "
                             "at least 1")

    def as_relay(self) -> RelaySettings:
        """The relay settings that send to this catcher."""
        return RelaySettings(host=self.host, port=self.port, tls="none", timeout=10.0)


@dataclass(frozen=True, slots=True)
class MailboxSettings:
    """``[[plugins.email.mailboxes]]``: one IMAP folder the bridge reads customer mail from.

    ``tls``: "tls" (port 993), "starttls" (port 143) or "none" (loopback only); certificates
    are verified, against ``ca_file`` (PEM) when set. Log in with ``password``, or with an
    OAuth2 access token (XOAUTH2) read afresh at every login from ``oauth2_token_file`` or
    the output of ``oauth2_token_command``, so a sidecar can keep it fresh.
    After a message is stored, ``after = "seen"`` flags it \\Seen, ``after = "move"`` moves it
    to ``move_to``. ``address``: the support address this mailbox receives, counted as a
    recipient even when the mail does not name it (Bcc, forwarding). With ``idle`` the
    reader waits in IMAP IDLE (re-issued every ``idle_seconds``) where the server offers
    it, else it polls every ``poll_seconds``. On the very first start, ``first_start =
    "unseen"`` reads only the unseen messages already in the folder, "all" reads them all.
    """

    host: str
    username: str
    port: int = 0
    tls: Literal["none", "starttls", "tls"] = "tls"
    ca_file: str = ""
    password: Secret | None = None
    oauth2_token_file: str = ""
    oauth2_token_command: list[str] = field(default_factory=list)
    folder: str = "INBOX"
    after: Literal["seen", "move"] = "seen"
    move_to: str = ""
    address: str = ""
    idle: bool = True
    idle_seconds: float = 600.0
    poll_seconds: float = 60.0
    timeout: float = 30.0
    first_start: Literal["unseen", "all"] = "unseen"

    def __post_init__(self) -> None:
        object.__setattr__(self, "address", self.address.strip().lower())
        if not self.host.strip():
            raise ValueError("mailboxes: host is empty")
        if not self.username:
            raise ValueError(f"mailbox {self.host}: username is empty")
        if self.port == 0:
            object.__setattr__(self, "port", 993 if self.tls == "tls" else 143)
        if not 0 < self.port < 65536:
            raise ValueError(f"mailbox {self.label}: port {self.port} is not a TCP port")
        logins = [bool(self.password), bool(self.oauth2_token_file),
                  bool(self.oauth2_token_command)]
        if sum(logins) != 1:
            raise ValueError(
                f"mailbox {self.label}: set exactly one of password, oauth2_token_file and "
                "oauth2_token_command"
            )
        if self.tls == "none" and not _is_loopback(self.host):
            raise ValueError(
                f'mailbox {self.label}: tls = "none" is allowed only on loopback (credentials '
                "are not sent in the clear)"
            )
        if self.ca_file and self.tls == "none":
            raise ValueError(f'mailbox {self.label}: ca_file is set but tls is "none"')
        if not self.folder:
            raise ValueError(f"mailbox {self.label}: folder is empty")
        if (self.after == "move") != bool(self.move_to):
            raise ValueError(
                f'mailbox {self.label}: move_to goes with after = "move" (and only with it)'
            )
        if self.move_to and self.move_to == self.folder:
            raise ValueError(f"mailbox {self.label}: move_to is the folder being read")
        if self.address and "@" not in self.address:
            raise ValueError(f"mailbox {self.label}: address {self.address!r} is no address")
        if not 1 <= self.idle_seconds <= 29 * 60:
            # RFC 2177: servers may drop a client idling longer than 30 minutes.
            raise ValueError(f"mailbox {self.label}: idle_seconds must be 1 to 1740")
        for name in ("poll_seconds", "timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"mailbox {self.label}: {name} must be positive")

    @property
    def label(self) -> str:
        """How logs and checks name this mailbox (never with a secret)."""
        return f"{self.username}@{self.host}:{self.port}/{self.folder}"


def accepts_recipient(recipient: str, addresses: Sequence[str], domains: Sequence[str]) -> bool:
    """Whether ``recipient`` is one of ``addresses`` (a plus tag ignored) or at one of
    ``domains``; both lower-case."""
    local, at, domain = recipient.strip().strip("<>").lower().rpartition("@")
    if not at or not local:
        return False
    base = local.split("+", 1)[0]
    return f"{base}@{domain}" in addresses or domain in domains


@dataclass(frozen=True, slots=True)
class EmailSettings:
    """The email channel: its SMTP server for inbound mail, limits, and outbound replies.

    ``support_addresses`` / ``support_domains``: the only recipients the server accepts (an
    address matches with any plus tag); attachments are kept in the bridge's attachment
    folder (``Bridge.blob_dir``). ``tls_cert``/``tls_key`` (PEM paths) enable STARTTLS;
    ``require_auth`` makes the server accept mail only from a client that logs in as
    ``auth_username`` (a forwarding source), which needs TLS unless the server listens on
    loopback. ``from_address`` defaults to the first support address and
    ``message_id_domain`` to its domain.
    ``max_line_bytes`` is the longest line the SMTP server takes (RFC 5321 says 1,000, real
    mail writes longer; a longer line is refused with 552).
    ``rate_limit_messages`` per ``rate_limit_seconds`` per sender; beyond it mail is stored
    but gets no session. ``keep_signature`` keeps signatures when trimming replies.
    ``relay`` is None when the section has no ``[relay]`` table: replies then go to the mail
    catcher when ``catcher`` is set, and otherwise fail at once ("no relay configured").
    ``mailboxes`` are IMAP folders read beside (or, with ``smtp_server = false``, instead
    of) the SMTP server.
    """

    listen_host: str = "127.0.0.1"
    listen_port: int = 2525
    support_addresses: list[str] = field(default_factory=list)
    support_domains: list[str] = field(default_factory=list)
    max_message_bytes: int = 25 * MB
    max_attachment_bytes: int = 20 * MB
    max_attachments: int = 20
    max_line_bytes: int = 64 * 1024
    tls_cert: str = ""
    tls_key: str = ""
    require_starttls: bool = False
    require_auth: bool = False
    auth_username: str = ""
    auth_password: Secret | None = None
    from_address: str = ""
    from_name: str = "Support"
    message_id_domain: str = ""
    reply_token_secret: Secret | None = None
    rate_limit_messages: int = 20
    rate_limit_seconds: float = 3600.0
    keep_signature: bool = False
    relay: RelaySettings | None = None
    catcher: CatcherSettings | None = None
    smtp_server: bool = True
    mailboxes: list[MailboxSettings] = field(default_factory=list)

    def __post_init__(self) -> None:
        addresses = [a.strip().lower() for a in self.support_addresses]
        domains = [d.strip().lower().lstrip("@") for d in self.support_domains]
        object.__setattr__(self, "support_addresses", addresses)
        object.__setattr__(self, "support_domains", domains)
        object.__setattr__(self, "from_address", self.from_address.strip().lower())
        object.__setattr__(self, "message_id_domain", self.message_id_domain.strip().lower())
        for address in [*addresses, *([self.from_address] if self.from_address else [])]:
            local, at, domain = address.rpartition("@")
            if not at or not local or not domain or "+" in local or " " in address:
                raise ValueError(f"{address!r} is not a plain e-mail address (no plus tag)")
        for domain in domains:
            if not domain or "@" in domain or " " in domain:
                raise ValueError(f"support_domains: {domain!r} is not a domain")
        if not 0 <= self.listen_port < 65536:
            raise ValueError(f"listen_port {self.listen_port} is not a TCP port")
        for name in ("max_message_bytes", "max_attachment_bytes", "rate_limit_messages"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_line_bytes < 1001:
            raise ValueError("max_line_bytes must be at least 1001 (RFC 5321's line limit)")
        if self.max_attachments < 0:
            raise ValueError("max_attachments cannot be negative")
        if self.max_attachment_bytes > self.max_message_bytes:
            raise ValueError(
                "max_attachment_bytes is larger than max_message_bytes: no such attachment "
                "could arrive"
            )
        if self.rate_limit_seconds <= 0:
            raise ValueError("rate_limit_seconds must be positive")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        if self.require_starttls and not self.tls_cert:
            raise ValueError("require_starttls needs tls_cert and tls_key")
        if bool(self.auth_username) != bool(self.auth_password):
            raise ValueError("auth_username and auth_password go together")
        if self.require_auth and not self.auth_username:
            raise ValueError("require_auth needs auth_username and auth_password")
        if self.require_auth and not self.tls_cert and not _is_loopback(self.listen_host):
            raise ValueError(
                "require_auth on a non-loopback listen_host needs tls_cert and tls_key "
                "(passwords are not sent in the clear)"
            )

        labels = [m.label for m in self.mailboxes]
        if len(set(labels)) != len(labels):
            raise ValueError("mailboxes: the same folder of the same account is listed twice")
        if not self.smtp_server and not self.mailboxes:
            raise ValueError("smtp_server = false and no mailboxes: no mail can come in")

    @property
    def outgoing_relay(self) -> RelaySettings | None:
        """Where replies go: the relay, else the mail catcher, else None (not sent)."""
        if self.relay is not None:
            return self.relay
        return self.catcher.as_relay() if self.catcher is not None else None

    @property
    def sender_address(self) -> str:
        """The From address of replies ("" when neither it nor a support address is set)."""
        return self.from_address or (self.support_addresses[0] if self.support_addresses else "")

    @property
    def our_message_id_domain(self) -> str:
        """The domain of our Message-IDs ("" when no address to derive it from is set)."""
        return self.message_id_domain or self.sender_address.rpartition("@")[2]

    def accepts(self, recipient: str) -> bool:
        """Whether the SMTP server takes mail for ``recipient`` (a plus tag is ignored)."""
        return accepts_recipient(recipient, self.support_addresses, self.support_domains)

    def missing(self) -> tuple[str, ...]:
        """What a working email channel still needs, for a health check (empty: nothing)."""
        problems = []
        if not self.support_addresses and not self.support_domains:
            problems.append("no support_addresses or support_domains: all inbound mail is refused")
        if not self.sender_address:
            problems.append("no from_address or support address to send replies from")
        if not self.reply_token_secret:
            problems.append("reply_token_secret is not set: replies cannot be threaded by token")
        return tuple(problems)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
