"""Emails per second parsed, trimmed and stored, on one core.

Usage::

    .venv/bin/python bench/ingest.py            # 2,000 messages per row
    .venv/bin/python bench/ingest.py --quick    # 40 messages per row (the smoke test)

The messages are a generated mix (``bench/mail_mix.py``). Rows, each over the same messages:

* baseline P: the stdlib parser alone (``BytesParser(policy=default)`` and the body part's
  content), what any Python mail consumer pays;
* ``parse_email`` + trim: casebridge's parser, then the body trimmed and sanitized exactly as
  the email plugin's ingest does (``casebridge_email.inbound.bodies``);
* baseline S: a raw SQLite insert of the same bytes, one WAL transaction per message with
  ``synchronous=FULL`` (the durability the store gives an accepted inbound);
* ``Bridge.receive``: the email plugin's ingest hook through a real Bridge and SqliteStore,
  in-process, attachments written to the blob folder, one inbound job enqueued per message;
* SMTP: a running bridge's SMTP server (the email plugin's service; the outbox is not run, so
  this is ingest alone), fed by smtplib in another process on another core, over one and four
  connections. A message counts when the server has answered 250, i.e. after it is stored.

This process is pinned to one core; ratios are time per message against the row's baseline.
"""

from __future__ import annotations

import argparse
import os
import pickle
import smtplib
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import common
import mail_mix

SQL_BASELINE = "CREATE TABLE inbound (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def stdlib_parse(messages: Sequence[bytes]) -> None:
    parser = BytesParser(policy=policy.default)
    for data in messages:
        msg = parser.parsebytes(data)
        assert isinstance(msg, EmailMessage)
        part = msg.get_body(preferencelist=("plain", "html"))
        if part is not None:
            part.get_content()


def parse_and_trim(messages: Sequence[bytes]) -> None:
    from casebridge_email.inbound import bodies
    from casebridge_email.mime import parse_email

    for data in messages:
        bodies(parse_email(data), keep_signature=False)


def sqlite_insert(messages: Sequence[bytes], folder: Path) -> float:
    import sqlite3

    conn = sqlite3.connect(folder / "baseline.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(SQL_BASELINE)

    def run() -> None:
        for data in messages:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO inbound (payload) VALUES (?)", (data,))
            conn.execute("COMMIT")

    try:
        return timed(run)
    finally:
        conn.close()


def bridge_config(folder: Path, smtp_port: int) -> Path:
    import tomli_w

    config = {
        "bridge": {"crm": "creatio", "channels": ["email"], "data_dir": "data",
                   "public_url": "http://127.0.0.1:8080"},
        "handoff": {"max_customer_turns": 0},
        "logging": {"level": "WARNING"},
        "plugins": {
            "email": {"listen_host": "127.0.0.1", "listen_port": smtp_port,
                      "support_addresses": [mail_mix.SUPPORT],
                      "rate_limit_messages": 1_000_000},
            "creatio": {"url": "sandbox", "reconcile_interval": 0},
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "casebridge.toml"
    path.write_text(tomli_w.dumps(config))
    return path


async def bridge_receive(messages: Sequence[bytes], folder: Path) -> float:
    from casebridge.bridge import Bridge
    from casebridge.model import RawInbound
    from casebridge_email.envelope import envelope_fields

    bridge = Bridge.from_config(bridge_config(folder, common.free_port()))
    await bridge.open()
    try:
        start = time.perf_counter()
        for data in messages:
            received = await bridge.receive(RawInbound(
                channel="email", payload=data, peer="127.0.0.1",
                fields=envelope_fields("customer@example.org", (mail_mix.SUPPORT,))))
            assert received.message_id and not received.duplicate, received
        return time.perf_counter() - start
    finally:
        await bridge.close()


async def smtp_ingest(messages: Sequence[bytes], folder: Path, connections: int) -> float:
    """Seconds the client took to have every message accepted by a running SMTP service."""
    import anyio
    from casebridge.bridge import Bridge

    port = common.free_port()
    bridge = Bridge.from_config(bridge_config(folder, port))
    email_plugin = bridge.pm.get_plugin("email")
    service = bridge.hooks.services()
    smtp = next(s for s in service if s.name.startswith("email"))
    assert email_plugin is not None
    payload = folder / "messages.pickle"
    payload.write_bytes(pickle.dumps(list(messages)))
    await bridge.open()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(smtp.run)
            command = [sys.executable, __file__, "--smtp-client", str(port), str(payload),
                       str(connections)]
            done = await anyio.run_process(command, check=True)
            tg.cancel_scope.cancel()
        elapsed = float(done.stdout.decode().split()[-1])
        counts = await bridge.store.job_counts()
        dropped = await bridge.store.list_dropped()
        assert sum(counts.values()) == len(messages), (counts, dropped[:3])
        return elapsed
    finally:
        await bridge.close()


def smtp_client(port: int, payload: Path, connections: int) -> None:
    """Send every message (one SMTP session per connection, messages dealt round-robin) and
    print the seconds it took; runs pinned to a core other than the bridge's."""
    core = common.other_core()
    if core is not None:
        os.sched_setaffinity(0, {core})
    messages: list[bytes] = pickle.loads(payload.read_bytes())  # our own file
    shares = [messages[i::connections] for i in range(connections)]

    def send(share: list[bytes]) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            for data in share:
                client.sendmail("customer@example.org", [mail_mix.SUPPORT], data)

    threads = [threading.Thread(target=send, args=(share,)) for share in shares]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"{time.perf_counter() - start:.6f}")


def row(name: str, count: int, total_bytes: int, seconds: float, baseline: float | None,
        baseline_name: str) -> list[object]:
    per = seconds / count
    ratio = f"{per / baseline:.1f}× {baseline_name}" if baseline else "1.0× (baseline)"
    return [name, count, f"{count / seconds:,.0f}", f"{per * 1e6:,.0f}",
            f"{total_bytes / seconds / common.MB:.1f}", ratio]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000, help="messages per row (2000)")
    parser.add_argument("--quick", action="store_true", help="40 messages per row")
    parser.add_argument("--smtp-client", nargs=3, metavar=("PORT", "FILE", "CONNECTIONS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smtp_client:
        port, payload, connections = args.smtp_client
        smtp_client(int(port), Path(payload), int(connections))
        return 0

    import logging

    import anyio

    logging.basicConfig(level=logging.WARNING)
    count = 40 if args.quick else args.messages
    pinned = common.pin_to_one_core()
    messages = mail_mix.mix(count)
    total = sum(len(m) for m in messages)
    warm = mail_mix.mix(10, seed=1, run="warm")
    stdlib_parse(warm)
    parse_and_trim(warm)

    rows: list[list[object]] = []
    parse_base = timed(lambda: stdlib_parse(messages)) / count
    rows.append(row("stdlib parse + body (baseline P)", count, total, parse_base * count,
                    None, "P"))
    rows.append(row("parse_email + trim", count, total,
                    timed(lambda: parse_and_trim(messages)), parse_base, "P"))
    with tempfile.TemporaryDirectory(prefix="casebridge-bench-") as tmp:
        folder = Path(tmp)
        store_base = sqlite_insert(messages, folder) / count
        rows.append(row("SQLite insert, same bytes (baseline S)", count, total,
                        store_base * count, None, "S"))
        seconds = anyio.run(bridge_receive, messages, folder / "receive")
        rows.append(row("Bridge.receive: ingest + SqliteStore", count, total, seconds,
                        store_base, "S"))
        for connections in (1, 4):
            seconds = anyio.run(smtp_ingest, messages, folder / f"smtp{connections}",
                                connections)
            rows.append(row(f"SMTP → bridge, {connections} connection(s)", count, total,
                            seconds, store_base, "S"))
    common.report(
        "Ingest: emails parsed, trimmed and stored",
        [f"Bridge process {pinned}; the SMTP client runs in another process on another core.",
         f"{count} generated messages (plain/Gmail/Outlook replies in 4 languages, 1 in 5 "
         f"with an attachment), {total / count / 1024:.1f} KiB on average."],
        ["step", "messages", "msg/s", "µs/msg", "MB/s", "time per msg vs baseline"],
        rows,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
