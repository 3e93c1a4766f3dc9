"""A real Dovecot IMAP server on a loopback port, with a throwaway configuration and a Maildir
in a temporary folder, for the mailbox tests. Skips the test when Dovecot is not installed
(``.ci/run`` installs Debian's dovecot-imapd)."""

from __future__ import annotations

import contextlib
import getpass
import imaplib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

DOVECOT = "/usr/sbin/dovecot"
USER = "bridge@example.com"
PASSWORD = "imap-test-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> tuple[str, str]:
    """The system user (and group) Dovecot's processes and mail files run as: ourselves, or
    as root (which Dovecot refuses for mail) the unprivileged "nobody"."""
    if os.geteuid() != 0:
        user = getpass.getuser()
        return user, _group_of(user)
    return "nobody", _group_of("nobody")


def _group_of(user: str) -> str:
    import grp

    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


class Dovecot:
    """``start()``, ``stop()``, ``restart()``; ``port`` stays the same across restarts.
    ``root`` is outside pytest's private tmp folder because Dovecot's unprivileged mail
    processes must be able to reach the Maildir."""

    def __init__(
        self,
        *,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
        idle: bool = True,
        oauth2_introspection_url: str = "",
    ) -> None:
        if not Path(DOVECOT).exists():
            pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd)")
        self.root = Path(tempfile.mkdtemp(prefix="casebridge-dovecot-"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        user, group = _run_as()
        mail = self.root / "mail"
        mail.mkdir()
        if os.geteuid() == 0:
            shutil.chown(mail, user, group)
        (self.root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        ssl_lines = ["ssl = no"]
        self.tls_port = 0  # implicit TLS, only with a certificate
        if tls_cert and tls_key:
            ssl_lines = ["ssl = yes", f"ssl_cert = <{tls_cert}", f"ssl_key = <{tls_key}"]
            self.tls_port = free_port()
        # XOAUTH2 tokens are checked by an RFC 7662 introspection endpoint the test runs.
        oauth2_passdb: list[str] = []
        if oauth2_introspection_url:
            (self.root / "oauth2.conf.ext").write_text(
                "introspection_mode = post\n"
                f"introspection_url = {oauth2_introspection_url}\n"
                "username_attribute = username\n"
                "active_attribute = active\n"
                "active_value = true\n"
            )
            oauth2_passdb = [
                "passdb {",
                "  driver = oauth2",
                "  mechanisms = xoauth2",
                f"  args = {self.root}/oauth2.conf.ext",
                "}",
            ]
        # Without IDLE in the capability list the reader must fall back to polling.
        capability = (
            [] if idle else ["imap_capability = IMAP4rev1 SASL-IR LITERAL+ ENABLE UIDPLUS MOVE"]
        )
        (self.root / "dovecot.conf").write_text(
            "\n".join(
                [
                    "protocols = imap",
                    "listen = 127.0.0.1",
                    f"base_dir = {self.root}/run",
                    f"state_dir = {self.root}/state",
                    f"instance_name = casebridge-test-{self.port}",
                    f"log_path = {self.root}/dovecot.log",
                    *ssl_lines,
                    "disable_plaintext_auth = no",
                    "auth_mechanisms = plain login"
                    + (" xoauth2" if oauth2_introspection_url else ""),
                    "auth_failure_delay = 0",  # a refused login answers at once
                    f"default_internal_user = {user}",
                    f"default_login_user = {user}",
                    f"default_internal_group = {group}",
                    "first_valid_uid = 1",
                    f"mail_location = maildir:{mail}/%u",
                    *capability,
                    "passdb {",
                    "  driver = passwd-file",
                    "  mechanisms = plain login",
                    f"  args = scheme=PLAIN username_format=%u {self.root}/users",
                    "}",
                    *oauth2_passdb,
                    "userdb {",
                    "  driver = static",
                    f"  args = uid={user} gid={group} home={mail}/%u",
                    "}",
                    "service imap-login {",
                    "  inet_listener imap {",
                    "    address = 127.0.0.1",
                    f"    port = {self.port}",
                    "  }",
                    "  inet_listener imaps {",
                    "    address = 127.0.0.1",
                    f"    port = {self.tls_port}",
                    "  }",
                    "  chroot =",
                    "}",
                    "service anvil {",
                    "  chroot =",
                    "}",
                    "",
                ]
            )
        )

    @property
    def maildir(self) -> Path:
        return self.root / "mail" / USER

    def start(self) -> Dovecot:
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "stderr.log").open("ab"),
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):
                        return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Dovecot did not start:\n" + self.log())
            time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # The master leaves running IMAP sessions behind; end them too, so a restart drops
        # every connection as a crash or a real server restart does.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        parts = []
        for name in ("dovecot.log", "stderr.log"):
            path = self.root / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    # -- a mail client for the tests --------------------------------------------------------

    def client(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        imap.login(USER, PASSWORD)
        return imap

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        imap = self.client()
        try:
            for message in messages:
                status, _ = imap.append(folder, None, None, message)
                assert status == "OK"
        finally:
            imap.logout()

    def create(self, folder: str) -> None:
        imap = self.client()
        try:
            imap.create(folder)
        finally:
            imap.logout()

    def delete(self, folder: str) -> None:
        imap = self.client()
        try:
            imap.delete(folder)
        finally:
            imap.logout()

    def flags(self, folder: str = "INBOX") -> dict[str, str]:
        """Message-ID -> FLAGS of each message in ``folder``."""
        imap = self.client()
        try:
            imap.select(folder)
            _, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        finally:
            imap.logout()
        out: dict[str, str] = {}
        for item in data:
            if isinstance(item, tuple):
                meta, header = item
                value = header.decode().split(":", 1)[1].strip() if b":" in header else ""
                out[value.strip("<>")] = meta.decode()
        return out

    def count(self, folder: str = "INBOX") -> int:
        imap = self.client()
        try:
            status, data = imap.select(folder, readonly=True)
            assert status == "OK", data
            return int(data[0])
        finally:
            imap.logout()


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM), made with openssl."""
    cert, key = folder / "imap-cert.pem", folder / "imap-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def mail(n: int, *, sender: str = "", subject: str = "", body: str = "") -> bytes:
    """A customer's mail with Message-ID ``<msg-n@customer.example>``."""
    sender = sender or f"customer{n}@customer.example"
    return (
        f"From: Customer {n} <{sender}>\r\n"
        "To: support@example.com\r\n"
        f"Subject: {subject or f'Question {n}'}\r\n"
        f"Message-ID: <msg-{n}@customer.example>\r\n"
        "Date: Fri, 04 Dec 2026 10:00:00 +0000\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
        f"{body or f'Hello, this is question number {n}.'}\r\n"
    ).encode()
