"""Peak memory (RSS) of a bridge holding 10,000 open sessions, and while ingesting one 25 MB
email.

Usage::

    .venv/bin/python bench/memory.py              # 10,000 sessions, 25 MB messages
    .venv/bin/python bench/memory.py --quick      # 300 sessions, 2 MB (the smoke test)
    .venv/bin/python bench/memory.py --trace      # also where the ingest's memory goes

Every measurement runs in a fresh subprocess and reads its own peak RSS (VmHWM, else
``ru_maxrss``). The baseline is the same process just before the work (interpreter, casebridge
and its plugins imported, the bridge opened on its store), with VmHWM reset to the current RSS
where Linux allows; "above baseline" is peak minus baseline. A bare interpreter's peak is
printed for scale.

* sessions: 10,000 open sessions (one contact and two messages each) are written through the
  store API by one process; a fresh one then opens the bridge, reads a full
  ``list_sessions`` page (50, as ``casebridge sessions list``), then all 10,000 in one call,
  and renders one session page through the bridge's web app (its signed link, in-process
  ASGI).
* email: one message with a 25 MB attachment, and one with a 25 MB text body, read from a
  file into memory (as the SMTP server holds it), then ``parse_email`` + trim (what ingest
  does before storing), and separately the whole ``Bridge.receive`` (email ingest hook,
  attachment written to the blob folder, message stored in SQLite). The ratio is the RSS
  above baseline over the message's size on the wire.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import common

SUPPORT = "support@example.com"


# -- the child processes ----------------------------------------------------------------


def bridge_config(folder: Path, max_mb: int) -> Path:
    import tomli_w

    config = {
        "bridge": {"crm": "creatio", "channels": ["email"], "data_dir": "data",
                   "public_url": "http://127.0.0.1:8080",
                   "link_secret": "bench-link-secret-0123456789"},
        "handoff": {"max_customer_turns": 0},
        "logging": {"level": "WARNING"},
        "plugins": {
            "email": {"listen_port": common.free_port(), "support_addresses": [SUPPORT],
                      "max_message_bytes": max_mb * common.MB,
                      "max_attachment_bytes": max_mb * common.MB},
            "creatio": {"url": "sandbox", "reconcile_interval": 0,
                        "webhook_token": "bench-webhook-token-0123456789"},
        },
    }
    path = folder / "casebridge.toml"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(tomli_w.dumps(config))
    return path


async def open_bridge(folder: Path, max_mb: int) -> Any:
    from casebridge.bridge import Bridge

    bridge = Bridge.from_config(bridge_config(folder, max_mb))
    await bridge.open()
    return bridge


async def populate(folder: Path, count: int) -> dict[str, Any]:
    from casebridge.model import (
        Author,
        Contact,
        Direction,
        Message,
        Session,
        SessionStatus,
        derived_id,
    )

    bridge = await open_bridge(folder, 64)
    try:
        for n in range(count):
            address = f"customer{n}@example.org"
            contact = await bridge.store.create_contact(
                Contact(id=derived_id("contact", address), name=f"Customer {n}",
                        emails=(address,)))
            session = await bridge.store.create_session(Session(
                id=derived_id("session", "email", str(n)), channel="email", contact=contact,
                status=SessionStatus.ASSISTANT, channel_address=SUPPORT,
                subject=f"Printer {n} broken"))
            for i, author in enumerate((Author.CUSTOMER, Author.ASSISTANT)):
                text = (f"Message {i} of session {n}: the printer shows error E{n % 97:02d} "
                        "after the firmware update and will not print.")
                await bridge.store.add_message(Message(
                    id=derived_id("message", str(n), str(i)), channel="email",
                    direction=Direction.INBOUND if i == 0 else Direction.OUTBOUND,
                    author=author, external_id=f"<{n}.{i}@example.org>",
                    sender=address if i == 0 else SUPPORT,
                    recipients=(SUPPORT if i == 0 else address,), text=text,
                    original_text=text, subject=session.subject, session_id=session.id))
        assert await bridge.store.count_sessions(SessionStatus.ASSISTANT) == count
        return {"peak": common.peak_rss()}
    finally:
        await bridge.close()


async def sessions(folder: Path, count: int) -> dict[str, Any]:
    from urllib.parse import urlsplit

    import httpx
    from casebridge.web import create_app

    bridge = await open_bridge(folder, 64)
    try:
        common.reset_peak_rss()
        result: dict[str, Any] = {"baseline": common.peak_rss()}
        page = await bridge.store.list_sessions(limit=50)
        assert len(page) == min(50, count)
        result["page"] = common.peak_rss()
        everything = await bridge.store.list_sessions(limit=count)
        assert len(everything) == count
        result["all"] = common.peak_rss()
        del everything
        link = urlsplit(bridge.session_link(page[0].id))
        transport = httpx.ASGITransport(app=create_app(bridge))
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
            answer = await client.get(f"{link.path}?{link.query}")
        assert answer.status_code == 200 and "Message 0 of session" in answer.text
        result["render"] = common.peak_rss()
        return result
    finally:
        await bridge.close()


async def ingest_email(folder: Path, eml: Path, stage: str, max_mb: int) -> dict[str, Any]:
    import anyio
    from casebridge.model import RawInbound
    from casebridge_email.envelope import envelope_fields
    from casebridge_email.inbound import bodies
    from casebridge_email.mime import parse_email

    bridge = await open_bridge(folder, max_mb)
    try:
        common.reset_peak_rss()
        result: dict[str, Any] = {"baseline": common.peak_rss()}
        data = await anyio.Path(eml).read_bytes()
        result["size"] = len(data)
        if stage == "parse":
            parsed = parse_email(data)
            text, _, _ = bodies(parsed, keep_signature=False)
            assert parsed.attachments or len(text) > len(data) // 2, len(text)
        else:
            received = await bridge.receive(RawInbound(
                channel="email", payload=data,
                fields=envelope_fields("customer@example.org", (SUPPORT,))))
            # The peak of the ingest itself; reading the message back to check it is not
            # part of it (the store's read holds the text twice, the bytes and the str).
            result["peak"] = common.peak_rss()
            assert received.message_id, received
            message = await bridge.store.get_message(received.message_id)
            assert message is not None
            assert all(a.location and not a.refused for a in message.attachments), message
            assert len(message.text) > len(data) // 2 or message.attachments
            return result
        result["peak"] = common.peak_rss()
        return result
    finally:
        await bridge.close()


class StagePeaks:
    """Wraps functions so each call records the most memory (tracemalloc) it held above
    what was live when it started; nested stages pass their peaks up to the caller's."""

    def __init__(self) -> None:
        self.peaks: dict[str, int] = {}
        self._stack: list[list[int]] = []  # [entry, peak so far] per running stage

    def _enter(self) -> None:
        import tracemalloc

        current, peak = tracemalloc.get_traced_memory()
        if self._stack:
            self._stack[-1][1] = max(self._stack[-1][1], peak)
        tracemalloc.reset_peak()
        self._stack.append([current, current])

    def _leave(self, name: str) -> None:
        import tracemalloc

        entry, peak = self._stack.pop()
        peak = max(peak, tracemalloc.get_traced_memory()[1])
        self.peaks[name] = max(self.peaks.get(name, 0), peak - entry)
        if self._stack:
            self._stack[-1][1] = max(self._stack[-1][1], peak)

    def wrap(self, owner: Any, attribute: str, name: str) -> None:
        import functools
        import inspect

        original = getattr(owner, attribute)
        if inspect.iscoroutinefunction(original):
            @functools.wraps(original)
            async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
                self._enter()
                try:
                    return await original(*args, **kwargs)
                finally:
                    self._leave(name)
            setattr(owner, attribute, wrapped_async)
        else:
            @functools.wraps(original)
            def wrapped(*args: Any, **kwargs: Any) -> Any:
                self._enter()
                try:
                    return original(*args, **kwargs)
                finally:
                    self._leave(name)
            setattr(owner, attribute, wrapped)


def traced(folder: Path, eml: Path, max_mb: int) -> dict[str, Any]:
    """The most memory each stage of the ingest held above its start (tracemalloc)."""
    import email.feedparser
    import email.parser
    import tracemalloc

    import anyio
    from casebridge.store.sqlite import SqliteStore
    from casebridge_email import inbound, mime, plugin

    stages = StagePeaks()
    stages.wrap(plugin, "parse_email", "parse_email (whole)")
    stages.wrap(email.parser.BytesParser, "parsebytes", "  stdlib BytesParser.parsebytes")
    stages.wrap(email.feedparser.BytesFeedParser, "feed", "    stdlib FeedParser.feed")
    stages.wrap(email.feedparser.BytesFeedParser, "close", "    stdlib FeedParser.close")
    stages.wrap(mime._Body, "walk", "  _Body.walk (decode parts)")
    stages.wrap(mime._Body, "_body", "    _Body._body (in place, else decoded)")
    stages.wrap(mime._Body, "_payload", "      _Body._payload (stdlib decoding)")
    stages.wrap(mime._Body, "_decode_body", "    _Body._decode_body")
    stages.wrap(plugin, "store_attachments", "store_attachments")
    stages.wrap(plugin, "to_message", "to_message (trim, sanitize)")
    stages.wrap(inbound, "visible_text", "  visible_text")
    stages.wrap(inbound, "html_to_text", "  html_to_text")
    stages.wrap(SqliteStore, "accept_inbound", "SqliteStore.accept_inbound")
    tracemalloc.start()
    anyio.run(ingest_email, folder, eml, "ingest", max_mb)
    peak = tracemalloc.get_traced_memory()[1]
    top = [f"{size / common.MB:7.1f} MiB  {name}" for name, size in stages.peaks.items()]
    return {"top": top, "traced_peak": peak}


def child(argv: Sequence[str]) -> None:
    import anyio

    kind, folder = argv[0], Path(argv[1])
    if kind == "idle":
        result: dict[str, Any] = {"peak": common.peak_rss()}
    elif kind == "populate":
        result = anyio.run(populate, folder, int(argv[2]))
    elif kind == "sessions":
        result = anyio.run(sessions, folder, int(argv[2]))
    elif kind == "trace":
        result = traced(folder, Path(argv[2]), int(argv[3]))
    else:
        result = anyio.run(ingest_email, folder, Path(argv[2]), kind, int(argv[3]))
    print(json.dumps(result))


# -- the parent -------------------------------------------------------------------------


def run_child(*args: object) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", *map(str, args)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"child {args[0]} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def write_emails(folder: Path, size: int) -> dict[str, Path]:
    """One message with a ``size``-byte attachment, one with a ``size``-byte text body."""
    import random

    rng = random.Random(25)
    words = ("printer", "error", "firmware", "update", "log", "line", "status", "paper",
             "tray", "queue", "job", "failed", "retry", "network", "driver", "timeout")
    lines, total = [], 0
    while total < size:
        line = " ".join(rng.choice(words) for _ in range(11))
        lines.append(line)
        total += len(line) + 1
    paths = {}
    for kind in ("attachment", "text body"):
        msg = EmailMessage()
        msg["From"] = "Customer <customer@example.org>"
        msg["To"] = SUPPORT
        msg["Subject"] = f"Big {kind}"
        msg["Message-ID"] = f"<big.{kind.replace(' ', '-')}@example.org>"
        if kind == "attachment":
            msg.set_content("The printer's crash dump is attached.\n")
            msg.add_attachment(rng.randbytes(size), maintype="application",
                               subtype="octet-stream", filename="crash.dump")
        else:
            msg.set_content("Here is the printer log:\n\n" + "\n".join(lines) + "\n")
        path = folder / f"{kind.replace(' ', '-')}.eml"
        path.write_bytes(msg.as_bytes(policy=policy.SMTP))
        paths[kind] = path
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000, help="open sessions (10000)")
    parser.add_argument("--size-mb", type=int, default=25,
                        help="attachment / text body size in MiB (25)")
    parser.add_argument("--quick", action="store_true", help="300 sessions, 2 MiB")
    parser.add_argument("--trace", action="store_true",
                        help="also list the biggest allocations at the ingest's peak")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    if args.quick:
        args.sessions, args.size_mb = 300, 2
    mb = common.MB
    limit = args.size_mb * 2 + 8  # room for base64 and headers
    rows: list[list[object]] = []
    traces: list[str] = []
    with tempfile.TemporaryDirectory(prefix="casebridge-bench-") as tmp:
        root = Path(tmp)
        idle = run_child("idle", root)["peak"]
        made = run_child("populate", root / "sessions", args.sessions)
        rows.append([f"write {args.sessions:,} sessions (store API)", "—",
                     f"{made['peak'] / mb:.1f}", "—", "—"])
        seen = run_child("sessions", root / "sessions", args.sessions)
        base = seen["baseline"]
        for key, label in (("page", "list_sessions page of 50"),
                           ("all", f"list_sessions, all {args.sessions:,}"),
                           ("render", "+ render one session page")):
            rows.append([f"{args.sessions:,} open sessions: {label}", f"{base / mb:.1f}",
                         f"{seen[key] / mb:.1f}", f"{(seen[key] - base) / mb:.1f}", "—"])
        emails = write_emails(root, args.size_mb * mb)
        for kind, eml in emails.items():
            for stage, label in (("parse", "parse_email + trim"), ("ingest", "Bridge.receive")):
                got = run_child(stage, root / f"{stage}-{kind.replace(' ', '-')}", eml, limit)
                above = got["peak"] - got["baseline"]
                rows.append([f"{args.size_mb} MiB {kind} ({got['size'] / mb:.1f} MiB on the "
                             f"wire): {label}", f"{got['baseline'] / mb:.1f}",
                             f"{got['peak'] / mb:.1f}", f"{above / mb:.1f}",
                             f"{above / got['size']:.1f}×"])
            if args.trace:
                got = run_child("trace", root / f"trace-{kind.replace(' ', '-')}", eml, limit)
                traces.append(f"{kind}: most memory each stage held above its start "
                              "(tracemalloc):")
                traces.extend("    " + line for line in got["top"])
    common.report(
        "Memory: peak RSS",
        [f"Bare interpreter peak: {idle / mb:.1f} MiB. Baseline: the same process before the "
         "work (casebridge imported, bridge open). Each row is a fresh process, except the "
         "three session rows (one process, peaks in order)."],
        ["measurement", "baseline MiB", "peak MiB", "above baseline MiB",
         "above baseline / message"],
        rows,
    )
    if traces:
        print()
        print("\n".join(traces))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
