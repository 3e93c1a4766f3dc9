"""The mailbox reader against a real Dovecot on loopback: a real runner (SQLite, outbox) with
the email plugin reading an IMAP folder instead of running its SMTP server."""

from __future__ import annotations

import http.server
import json
import logging
import shutil
import sys
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from casebridge.bridge import Bridge
from casebridge.model import derived_id
from casebridge_email.mailbox import state_key
from casebridge_email.settings import MailboxSettings
from support.bridges import install_jsonl
from support.bridges import write_config as write_bridge_config
from support.dovecot import PASSWORD, USER, Dovecot, free_port, mail, self_signed_certificate

SUPPORT = "support@example.com"


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot().start()
    try:
        yield server
    finally:
        server.close()


def mailbox(server: Dovecot, **extra: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": server.port,
        "tls": "none",
        "username": USER,
        "password": PASSWORD,
        "poll_seconds": 0.3,
        "first_start": "all",
        **extra,
    }


@asynccontextmanager
async def running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *mailboxes: dict[str, Any], **email: Any
) -> AsyncIterator[Bridge]:
    if not (tmp_path / "site").exists():  # a restarted bridge reuses the folder
        install_jsonl(monkeypatch, tmp_path)
    path = write_bridge_config(
        tmp_path,
        bridge={"channels": ["email"]},
        http={"host": "127.0.0.1", "port": free_port()},
        plugins={
            "email": {
                "smtp_server": False,
                "support_addresses": [SUPPORT],
                "mailboxes": list(mailboxes),
                # Replies go to the mail catcher (with no relay at all, check says so).
                "catcher": {"port": free_port()},
                **email,
            }
        },
    )
    bridge = Bridge.from_config(path)
    async with anyio.create_task_group() as tg:
        await tg.start(bridge.run)
        try:
            yield bridge
        finally:
            tg.cancel_scope.cancel()


async def stored(bridge: Bridge, n: int) -> bool:
    return (
        await bridge.store.get_message(derived_id("email", f"msg-{n}@customer.example")) is not None
    )


async def wait_stored(bridge: Bridge, numbers: range | list[int], within: float = 15) -> float:
    """Seconds until every message of ``numbers`` is in the store (polled: the store has no
    event to wait on)."""
    began = time.monotonic()
    with anyio.fail_after(within):
        for n in numbers:
            while not await stored(bridge, n):  # noqa: ASYNC110
                await anyio.sleep(0.02)
    return time.monotonic() - began


async def wait_until(predicate: Any, within: float = 15) -> None:
    """Poll ``predicate`` (blocking: it asks Dovecot) until it is true."""
    with anyio.fail_after(within):
        while not await anyio.to_thread.run_sync(predicate):  # noqa: ASYNC110
            await anyio.sleep(0.05)


async def cursor(
    bridge: Bridge, server: Dovecot, folder: str = "INBOX", *, last_uid: int = 0
) -> dict[str, Any]:
    """The mailbox's stored cursor, once it has reached ``last_uid`` (it is saved just after
    the messages are flagged, so a test that saw the flags may be a moment early)."""
    settings = MailboxSettings(
        host="127.0.0.1",
        port=server.port,
        tls="none",
        username=USER,
        password=bridge.settings("email").mailboxes[0].password,
        folder=folder,
    )
    with anyio.fail_after(15):
        while True:
            state = await bridge.store.get_state("email", state_key(settings))
            if state is not None and state["last_uid"] >= last_uid:
                return state
            await anyio.sleep(0.02)


async def test_mail_in_the_folder_is_stored_then_flagged_seen(
    dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dovecot.append(*(mail(n) for n in range(1, 4)))
    async with running(tmp_path, monkeypatch, mailbox(dovecot)) as bridge:
        await wait_stored(bridge, range(1, 4))
        await wait_until(lambda: all("\\Seen" in f for f in dovecot.flags().values()))
        message = await bridge.store.get_message(derived_id("email", "msg-2@customer.example"))
        assert message is not None
        assert message.sender == "customer2@customer.example"
        assert message.recipients[0] == SUPPORT
        assert message.text == "Hello, this is question number 2."
        state = await cursor(bridge, dovecot, last_uid=3)
    assert state["last_uid"] == 3 and state["initial"] is False


async def test_after_move_the_stored_mail_leaves_the_folder(
    dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dovecot.create("Done")
    dovecot.append(*(mail(n) for n in range(1, 4)))
    box = mailbox(dovecot, after="move", move_to="Done")
    async with running(tmp_path, monkeypatch, box) as bridge:
        await wait_stored(bridge, range(1, 4))
        await wait_until(lambda: dovecot.count("INBOX") == 0 and dovecot.count("Done") == 3)
        assert set(dovecot.flags("Done")) == {f"msg-{n}@customer.example" for n in range(1, 4)}


async def test_first_start_unseen_leaves_mail_already_read_alone(
    dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dovecot.append(mail(1), mail(2))
    imap = dovecot.client()
    imap.select("INBOX")
    imap.store("1", "+FLAGS", "\\Seen")  # a person read message 1 before the bridge came
    imap.logout()
    async with running(tmp_path, monkeypatch, mailbox(dovecot, first_start="unseen")) as bridge:
        await wait_stored(bridge, [2])
        dovecot.append(mail(3))
        await wait_stored(bridge, [3])
        assert not await stored(bridge, 1)
        state = await cursor(bridge, dovecot, last_uid=3)
    assert state == {"uidvalidity": state["uidvalidity"], "last_uid": 3, "initial": False}


async def test_idle_wakes_the_reader_within_seconds(
    dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Polling every 10 minutes: only IDLE can bring the message in this fast.
    box = mailbox(dovecot, poll_seconds=600.0)
    async with running(tmp_path, monkeypatch, box) as bridge:
        dovecot.append(mail(1))
        await wait_stored(bridge, [1])
        await anyio.sleep(0.5)  # the reader is back in IDLE
        dovecot.append(mail(2))
        took = await wait_stored(bridge, [2], within=10)
    # "within a second or two", with room for a loaded CI machine.
    assert took < 3.0, f"IDLE took {took:.2f}s to bring the message in"


async def test_a_server_without_idle_is_polled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = Dovecot(idle=False).start()
    try:
        async with running(tmp_path, monkeypatch, mailbox(server, poll_seconds=0.3)) as bridge:
            detail = (await bridge.hooks.check("email")).detail
            assert "no IDLE: polling every 0.3s" in detail
            server.append(mail(1))
            await wait_stored(bridge, [1])
            server.append(mail(2))
            await wait_stored(bridge, [2])
    finally:
        server.close()


async def test_a_restarted_bridge_resumes_after_the_last_message_without_repeats(
    dovecot: Dovecot,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dovecot.append(mail(1), mail(2))
    async with running(tmp_path, monkeypatch, mailbox(dovecot)) as bridge:
        await wait_stored(bridge, [1, 2])
        await wait_until(lambda: all("\\Seen" in f for f in dovecot.flags().values()))
    # While the bridge is down: a new message, and a person marks an old one unread again.
    dovecot.append(mail(3))
    imap = dovecot.client()
    imap.select("INBOX")
    imap.store("1", "-FLAGS", "\\Seen")
    imap.logout()
    caplog.set_level(logging.INFO)
    async with running(tmp_path, monkeypatch, mailbox(dovecot)) as bridge:
        await wait_stored(bridge, [3])
        await wait_until(lambda: "\\Seen" in dovecot.flags()["msg-3@customer.example"])
        state = await cursor(bridge, dovecot, last_uid=3)
    assert state["last_uid"] == 3
    assert "resuming after UID 2" in caplog.text
    # Message 1 was not read again: no duplicate reached the store.
    assert "duplicate inbound" not in caplog.text
    assert "\\Seen" not in dovecot.flags()["msg-1@customer.example"]


async def test_a_uidvalidity_change_rereads_the_folder_and_dedupes(
    dovecot: Dovecot,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    dovecot.create("Support")
    dovecot.append(mail(1), mail(2), folder="Support")
    # A session idling in a folder that is deleted may hear nothing of it; the reader
    # notices the new UIDVALIDITY when it renews IDLE (and re-selects), here every second.
    box = mailbox(dovecot, folder="Support", idle_seconds=1.0)
    async with running(tmp_path, monkeypatch, box) as bridge:
        await wait_stored(bridge, [1, 2])
        before = await cursor(bridge, dovecot, "Support", last_uid=2)
        # The folder is rebuilt (a server migration): same mail, new UIDs, new UIDVALIDITY.
        dovecot.delete("Support")
        dovecot.create("Support")
        dovecot.append(mail(1), mail(2), mail(3), folder="Support")
        await wait_stored(bridge, [3], within=30)
        await wait_until(lambda: all("\\Seen" in f for f in dovecot.flags("Support").values()))
        after = await cursor(bridge, dovecot, "Support", last_uid=3)
        messages = await bridge.store.list_sessions()
    assert after["uidvalidity"] != before["uidvalidity"]
    assert after["last_uid"] == 3
    assert "UIDVALIDITY changed" in caplog.text
    assert caplog.text.count("duplicate inbound") == 2
    assert len(messages) == 3


async def test_a_dovecot_restart_loses_nothing(
    dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(tmp_path, monkeypatch, mailbox(dovecot)) as bridge:
        dovecot.append(mail(1))
        await wait_stored(bridge, [1])
        await anyio.to_thread.run_sync(dovecot.restart)
        dovecot.append(mail(2), mail(3))
        await wait_stored(bridge, [2, 3], within=30)
        await wait_until(lambda: all("\\Seen" in f for f in dovecot.flags().values()))


async def test_loop_guards_apply_to_mailbox_mail_and_address_is_the_recipient(
    dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auto = mail(1).replace(b"Subject:", b"Auto-Submitted: auto-replied\r\nSubject:")
    bcc = mail(2).replace(b"To: support@example.com", b"To: someone@else.example")
    dovecot.append(auto, bcc)
    box = mailbox(dovecot, address="help@example.com")
    async with running(
        tmp_path, monkeypatch, box, support_addresses=[SUPPORT, "help@example.com"]
    ) as bridge:
        await wait_stored(bridge, [2])
        await wait_until(lambda: all("\\Seen" in f for f in dovecot.flags().values()))
        dropped = await bridge.store.list_dropped()
        message = await bridge.store.get_message(derived_id("email", "msg-2@customer.example"))
    assert [d.reason for d in dropped] == ["auto-submitted message (Auto-Submitted: auto-replied)"]
    assert message is not None and message.recipients[0] == "help@example.com"


async def test_check_reports_login_folder_and_idle(
    dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = mailbox(dovecot)
    wrong = mailbox(dovecot, password="not-the-password")
    missing = mailbox(dovecot, folder="Nowhere")
    async with running(tmp_path, monkeypatch, good) as bridge:
        result = await bridge.hooks.check("email")
    assert result.ok, result.detail
    assert (
        f"mailbox {USER}@127.0.0.1:{dovecot.port}/INBOX: logged in, folder exists, "
        "IDLE offered" in result.detail
    )
    # The refused login last: Dovecot slows down logins after a failed one.
    for box, expected in ((missing, "'Nowhere' does not exist"), (wrong, "login refused")):
        async with running(tmp_path, monkeypatch, box) as bridge:
            result = await bridge.hooks.check("email")
        assert not result.ok
        assert expected in result.detail
        assert PASSWORD not in result.detail and "not-the-password" not in result.detail


@pytest.fixture
def tls_dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = self_signed_certificate(tmp_path)
    server = Dovecot(tls_cert=cert, tls_key=key).start()
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("tls", ["starttls", "tls"])
async def test_tls_and_starttls_verify_the_server_against_ca_file(
    tls_dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tls: str
) -> None:
    port = tls_dovecot.tls_port if tls == "tls" else tls_dovecot.port
    box = mailbox(tls_dovecot, tls=tls, port=port, ca_file="imap-cert.pem")
    tls_dovecot.append(mail(1))
    async with running(tmp_path, monkeypatch, box) as bridge:
        result = await bridge.hooks.check("email")
        assert result.ok, result.detail
        await wait_stored(bridge, [1])


async def test_an_unverifiable_certificate_is_refused(
    tls_dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No ca_file: the system's CAs do not know this self-signed certificate.
    box = mailbox(tls_dovecot, tls="tls", port=tls_dovecot.tls_port)
    tls_dovecot.append(mail(1))
    async with running(tmp_path, monkeypatch, box) as bridge:
        result = await bridge.hooks.check("email")
        await anyio.sleep(1.0)
        assert not await stored(bridge, 1)
    assert not result.ok
    assert "cannot connect" in result.detail and "CERTIFICATE_VERIFY_FAILED" in result.detail


async def test_an_oversized_message_is_left_in_the_folder_and_passed(
    dovecot: Dovecot,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    dovecot.append(mail(1, body="x" * 3000), mail(2))
    limits = {"max_message_bytes": 2000, "max_attachment_bytes": 1000}
    async with running(tmp_path, monkeypatch, mailbox(dovecot), **limits) as bridge:
        await wait_stored(bridge, [2])
        await wait_until(lambda: "\\Seen" in dovecot.flags()["msg-2@customer.example"])
        state = await cursor(bridge, dovecot, last_uid=2)
        assert not await stored(bridge, 1)
    assert "\\Seen" not in dovecot.flags()["msg-1@customer.example"]
    assert state["last_uid"] == 2
    assert "UID 1 is" in caplog.text and "over max_message_bytes: left in the folder" in caplog.text


class Introspection:
    """An OAuth2 token introspection endpoint (RFC 7662) on loopback for Dovecot's oauth2
    passdb: ``valid`` holds the access tokens it currently accepts."""

    def __init__(self) -> None:
        self.valid: set[str] = set()
        self.seen: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                form = urllib.parse.parse_qs(
                    self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                )
                token = form.get("token", [""])[0]
                outer.seen.append(token)
                body = json.dumps({"active": token in outer.valid, "username": USER}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/introspect"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def introspection() -> Iterator[Introspection]:
    endpoint = Introspection()
    try:
        yield endpoint
    finally:
        endpoint.close()


async def test_xoauth2_reads_a_fresh_token_at_every_login(
    introspection: Introspection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = Dovecot(oauth2_introspection_url=introspection.url).start()
    token_file = tmp_path / "imap-token"
    try:
        introspection.valid = {"token-1"}
        token_file.write_text("token-1\n")
        box = mailbox(server, password=None, oauth2_token_file="imap-token")
        del box["password"]
        server.append(mail(1))
        async with running(tmp_path, monkeypatch, box) as bridge:
            await wait_stored(bridge, [1])
            # A sidecar refreshes the token; the old one stops working; the server restarts.
            introspection.valid = {"token-2"}
            token_file.write_text("token-2\n")
            await anyio.to_thread.run_sync(server.restart)
            server.append(mail(2))
            await wait_stored(bridge, [2], within=30)
        assert introspection.seen[:1] == ["token-1"] and "token-2" in introspection.seen
        # A command that prints a token the server refuses: check says so, without the token.
        command = [sys.executable, "-c", "print('stale-token')"]
        refused = mailbox(server, oauth2_token_command=command)
        del refused["password"]
        async with running(tmp_path, monkeypatch, refused) as bridge:
            result = await bridge.hooks.check("email")
        assert not result.ok and "login refused" in result.detail
        assert "stale-token" not in result.detail
    finally:
        server.close()
