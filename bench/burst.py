"""A burst of emails into ``casebridge run`` with its outbox working, against the ceiling.

Usage::

    .venv/bin/python bench/burst.py                  # 5,000 messages, 4 connections
    .venv/bin/python bench/burst.py --count 200      # the smoke test's size

Two servers take the same burst (distinct senders, the generated mix of ``mail_mix.py``)
from the same client process, one after the other:

* the ceiling: a plain aiosmtpd server that commits each message to SQLite (WAL,
  ``synchronous=FULL``) before it answers 250, the least any durable SMTP ingest does;
* the bridge: ``casebridge run`` on a copy of ``config.example.toml`` (handoff off, its own
  ports and data folder), outbox running, so every accepted message also becomes an inbound
  job that threads it into a session while the burst goes on.

The client sends over ``--connections`` SMTP connections and notes when each 250 came. For
the bridge the bench then watches its store until every message is threaded into a session.
It reports acceptance (messages/s, whole burst and each half: a rate that falls in the
second half is a claim or a lock that slows with the backlog), the bridge against the
ceiling, and the drain: how long after the last 250 the last message was threaded, against
the burst's own duration (the backlog drains at least as fast as it builds when drain <=
burst).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import signal
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Sequence
from email import message_from_bytes, policy
from pathlib import Path

import common
import mail_mix

ROOT = Path(__file__).resolve().parents[1]
CEILING_SQL = "CREATE TABLE inbound (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)"


def burst(count: int) -> list[bytes]:
    """``count`` messages of the mix, each from its own sender and starting a conversation."""
    out = []
    for n, data in enumerate(mail_mix.mix(count, run="burst")):
        msg = message_from_bytes(data, policy=policy.SMTP)
        del msg["From"], msg["In-Reply-To"], msg["References"]
        msg["From"] = f"Customer {n} <customer{n}@burst.example.org>"
        out.append(msg.as_bytes())
    return out


# -- the client (its own process) ----------------------------------------------------------

def client(port: int, payload: Path, connections: int) -> None:
    """Send the messages, dealt round-robin over the connections; print the monotonic time
    of every 250 as JSON (CLOCK_MONOTONIC is one clock for every process on the machine)."""
    messages: list[bytes] = pickle.loads(payload.read_bytes())  # our own file
    shares = [list(range(i, len(messages), connections)) for i in range(connections)]
    accepted: list[float] = []
    lock = threading.Lock()

    def send(share: list[int]) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
            for i in share:
                smtp.sendmail(f"customer{i}@burst.example.org", [mail_mix.SUPPORT], messages[i])
                with lock:
                    accepted.append(time.monotonic())

    threads = [threading.Thread(target=send, args=(share,)) for share in shares]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"start": start, "accepted": sorted(accepted)}))


def run_client(port: int, payload: Path, connections: int) -> tuple[float, list[float]]:
    done = subprocess.run(
        [sys.executable, __file__, "--client", str(port), str(payload), str(connections)],
        check=True, capture_output=True, text=True)
    result = json.loads(done.stdout)
    return result["start"], result["accepted"]


# -- the ceiling server (its own process) --------------------------------------------------

def ceiling_server(port: int, db: Path) -> None:
    from aiosmtpd.smtp import SMTP

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(CEILING_SQL)

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO inbound (payload) VALUES (?)",
                         (envelope.original_content,))  # type: ignore[attr-defined]
            conn.execute("COMMIT")
            return "250 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Handler(), data_size_limit=40 * 1024 * 1024), "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- the runs ------------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """User plus system CPU time so far of a process (every thread) and of the processes it
    started that still run (the bridge's parse workers), from /proc."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return common.process_cpu(pid) + sum(cpu_seconds(int(child)) for child in children)


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


def measure_ceiling(folder: Path, payload: Path, connections: int
                    ) -> tuple[float, list[float], float]:
    """(client start, 250 times, the server's CPU seconds over the burst)."""
    port = common.free_port()
    server = subprocess.Popen([sys.executable, __file__, "--ceiling", str(port),
                               str(folder / "ceiling.db")])
    try:
        wait_for_port(port, server)
        before = cpu_seconds(server.pid)
        start, accepted = run_client(port, payload, connections)
        return start, accepted, cpu_seconds(server.pid) - before
    finally:
        server.terminate()
        server.wait()


def bridge_config(folder: Path) -> tuple[Path, int]:
    """config.example.toml with handoff off and every port and folder its own."""
    import tomli_w

    config = tomllib.loads((ROOT / "config.example.toml").read_text())
    smtp_port = common.free_port()
    config["bridge"]["data_dir"] = str(folder / "data")
    config["http"]["port"] = http_port = common.free_port()
    config["bridge"]["public_url"] = f"http://127.0.0.1:{http_port}"
    config["handoff"]["max_customer_turns"] = 0
    config["logging"]["level"] = "WARNING"
    plugins = config["plugins"]
    plugins["email"]["listen_port"] = smtp_port
    plugins["email"]["catcher"]["port"] = common.free_port()
    plugins["sms"]["sandbox_port"] = common.free_port()
    plugins["creatio"]["sandbox_port"] = common.free_port()
    path = folder / "casebridge.toml"
    path.write_text(tomli_w.dumps(config))
    return path, smtp_port


def threaded(db: Path) -> int:
    """Inbound messages the bridge has threaded into a session (a read-only WAL reader)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return 0
    try:
        row = conn.execute("SELECT count(*) FROM messages WHERE session_id != '' "
                           "AND direction = 'inbound'").fetchone()
        return int(row[0])
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    finally:
        conn.close()


def measure_bridge(folder: Path, payload: Path, connections: int, count: int,
                   profile: Path | None = None) -> tuple[float, list[float], float, float]:
    """(client start, 250 times, time the last message was threaded, the bridge's CPU
    seconds from the first send until then; NaN under py-spy, whose process it is not)."""
    config, port = bridge_config(folder)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [str(Path(sys.executable).with_name("casebridge")), "run", "--config", str(config)]
    if profile is not None:  # py-spy samples every thread of the bridge, in collapsed stacks
        command = ["py-spy", "record", "--threads", "--gil", "--nonblocking", "--format", "raw",
                   "-o", str(profile), "--", *command]
    bridge = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=open(folder / "bridge.log", "wb"))  # noqa: SIM115
    try:
        wait_for_port(port, bridge)
        cpu = (lambda: float("nan")) if profile else (lambda: cpu_seconds(bridge.pid))
        before = cpu()
        start, accepted = run_client(port, payload, connections)
        burst_seconds = accepted[-1] - start
        db = folder / "data" / "casebridge.db"
        deadline = accepted[-1] + max(60.0, 10 * burst_seconds)
        while (done := threaded(db)) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {done} of {count} threaded by the deadline")
            if bridge.poll() is not None:
                raise RuntimeError(f"the bridge exited with {bridge.returncode}")
            time.sleep(0.2)
        return start, accepted, time.monotonic(), cpu() - before
    finally:
        bridge.send_signal(signal.SIGINT)  # the bridge stops on it; py-spy writes its profile
        bridge.wait(timeout=60)


def rates(start: float, accepted: Sequence[float]) -> tuple[float, float, float]:
    """Messages/s over the whole burst, its first half and its second half."""
    half = len(accepted) // 2
    whole = len(accepted) / (accepted[-1] - start)
    first = half / (accepted[half - 1] - start)
    second = (len(accepted) - half) / (accepted[-1] - accepted[half - 1])
    return whole, first, second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--client", nargs=3, metavar=("PORT", "PAYLOAD", "CONNECTIONS"))
    parser.add_argument("--ceiling", nargs=2, metavar=("PORT", "DB"))
    parser.add_argument("--profile", type=Path,
                        help="run the bridge under py-spy, collapsed stacks to this file")
    args = parser.parse_args()
    if args.client:
        return client(int(args.client[0]), Path(args.client[1]), int(args.client[2]))
    if args.ceiling:
        return ceiling_server(int(args.ceiling[0]), Path(args.ceiling[1]))

    with tempfile.TemporaryDirectory(prefix="cb-burst-") as tmp:
        folder = Path(tmp)
        payload = folder / "messages.pickle"
        messages = burst(args.count)
        payload.write_bytes(pickle.dumps(messages))
        c_start, c_accepted, c_cpu = measure_ceiling(folder, payload, args.connections)
        b_start, b_accepted, b_threaded, b_cpu = measure_bridge(folder, payload, args.connections,
                                                          args.count, args.profile)
    ceiling, c_first, c_second = rates(c_start, c_accepted)
    whole, first, second = rates(b_start, b_accepted)
    burst_seconds = b_accepted[-1] - b_start
    drain = b_threaded - b_accepted[-1]
    size = sum(map(len, messages)) / len(messages)
    common.report(
        f"A burst of {args.count:,} emails over {args.connections} SMTP connections",
        [f"Messages: distinct senders, mean {size / 1024:.1f} KiB. The bridge: casebridge run "
         "on config.example.toml, handoff off, outbox running."],
        ["server", "msg/s (first half / second half)", "vs ceiling",
         "last threaded after the last 250", "burst duration", "server CPU per message"],
        [["aiosmtpd + SQLite commit (ceiling)", f"{ceiling:,.0f} ({c_first:,.0f} / "
          f"{c_second:,.0f})", "1.00×", "—", f"{c_accepted[-1] - c_start:.1f} s",
          f"{c_cpu / args.count * 1000:.2f} ms"],
         ["casebridge run", f"{whole:,.0f} ({first:,.0f} / {second:,.0f})",
          f"{whole / ceiling:.2f}×", f"{drain:.1f} s", f"{burst_seconds:.1f} s",
          f"{b_cpu / args.count * 1000:.2f} ms"]],
    )
    print(f"\ngoal: >= 0.45× the ceiling ({'met' if whole >= 0.45 * ceiling else 'NOT met'}); "
          f"drain <= burst ({'met' if drain <= burst_seconds else 'NOT met'})")


if __name__ == "__main__":
    main()
