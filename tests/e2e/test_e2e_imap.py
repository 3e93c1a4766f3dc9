"""A burst of mail into an IMAP mailbox while everything that can fail does: Dovecot is
restarted mid-burst, then `casebridge run` is killed with SIGKILL mid-burst and started
again. Every message ends up in the store exactly once, and flagged \\Seen in the folder."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployment import Deployment, wait_for
from support.dovecot import PASSWORD, USER, Dovecot, mail

pytestmark = pytest.mark.slow

BURST = 500


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    server = Dovecot().start()
    try:
        yield server
    finally:
        server.close()


def seen(server: Dovecot) -> int:
    """How many messages of the folder are flagged \\Seen (0 while Dovecot is down)."""
    try:
        imap = server.client()
    except OSError:
        return 0
    try:
        imap.select("INBOX", readonly=True)
        _, data = imap.search(None, "SEEN")
        return len(data[0].split())
    except Exception:
        return 0
    finally:
        with contextlib.suppress(Exception):
            imap.logout()


def stored_ids(deployment: Deployment) -> list[str]:
    path = deployment.root / "var" / "casebridge.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
        rows = db.execute(
            "SELECT external_id FROM messages WHERE channel = 'email' AND direction = 'inbound'"
        ).fetchall()
    return [r[0] for r in rows]


def kept_raw(deployment: Deployment) -> int:
    """Mail the bridge acknowledged and has not parsed yet."""
    path = deployment.root / "var" / "casebridge.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
        return int(db.execute("SELECT COUNT(*) FROM raw_inbounds").fetchone()[0])


def test_burst_with_dovecot_restart_and_bridge_sigkill_stores_each_message_once(
    dovecot: Dovecot, tmp_path: Path
) -> None:
    box = {
        "host": "127.0.0.1",
        "port": dovecot.port,
        "tls": "none",
        "username": USER,
        "password": PASSWORD,
        "first_start": "all",
        "poll_seconds": 1.0,
    }
    deployment = Deployment(
        tmp_path / "deployment",
        overrides={
            "plugins": {"email": {"mailboxes": [box], "rate_limit_messages": 1000}},
            "logging": {"level": "INFO", "json": False},
        },
    )
    deployment.start()
    began = time.monotonic()
    try:
        # First part of the burst; Dovecot restarts while the bridge is reading it.
        dovecot.append(*(mail(n) for n in range(200)))
        wait_for(lambda: seen(dovecot) >= 20, timeout=60, what="the bridge to start reading")
        dovecot.restart()
        # The rest arrives while the bridge is killed mid-read and started again.
        appender = threading.Thread(
            target=lambda: [dovecot.append(mail(n)) for n in range(200, BURST)]
        )
        appender.start()
        wait_for(lambda: seen(dovecot) >= 260, timeout=90, what="the bridge to read on")
        deployment.stop_bridge(kill=True)
        killed_at = seen(dovecot)
        appender.join(timeout=120)
        assert not appender.is_alive()
        deployment.start_bridge()
        wait_for(
            lambda: seen(dovecot) == BURST,
            timeout=120,
            what=f"all {BURST} messages to be flagged (killed at {killed_at})",
        )
        # Flagged once durable; kept mail is then parsed by the outbox.
        wait_for(lambda: kept_raw(deployment) == 0, timeout=120,
                 what="every kept message to be parsed")
        ids = stored_ids(deployment)
        print(f"{BURST} messages read in {time.monotonic() - began:.1f}s, killed at {killed_at}")
    finally:
        log = deployment.log("bridge")
        deployment.stop()
    expected = {f"msg-{n}@customer.example" for n in range(BURST)}
    assert len(ids) == len(set(ids)) == BURST, (len(ids), len(set(ids)))
    assert set(ids) == expected
    assert killed_at < BURST, "the bridge was not killed mid-burst"
    # It noticed the Dovecot restart and came back.
    assert "reconnecting in" in log
