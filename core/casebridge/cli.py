"""The ``casebridge`` command. Errors are one clear line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import tomli_w

from . import __version__
from .bridge import Bridge
from .config import load as load_config
from .contributions import Command
from .errors import CasebridgeError
from .logs import configure_logging, new_trace_id
from .model import HandoffDecision, SessionStatus
from .plugins import describe, load_entry_points, new_manager
from .starter import starter_config
from .stores import open_store_for

DEFAULT_CONFIG = "casebridge.toml"


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, default=Path(DEFAULT_CONFIG),
                        help=f"the TOML file (default: {DEFAULT_CONFIG})")


def _bridge(args: argparse.Namespace) -> Bridge:
    bridge = Bridge.from_config(args.config)
    configure_logging(bridge.config.logging.level, bridge.config.logging.json)
    return bridge


async def _with_store(args: argparse.Namespace, work: Callable[[Bridge], Any]) -> int:
    bridge = _bridge(args)
    await bridge.open()
    try:
        return await work(bridge)
    finally:
        await bridge.close()


# -- core commands ------------------------------------------------------------------------


async def cmd_run(args: argparse.Namespace) -> int:
    bridge = _bridge(args)
    with anyio.open_signal_receiver(2, 15) as signals:  # SIGINT, SIGTERM
        async with anyio.create_task_group() as tg:
            await tg.start(bridge.run)
            print(f"casebridge {__version__} running: plugins {', '.join(bridge.plugin_names())}"
                  f"; HTTP on http://{bridge.config.http.host}:{bridge.config.http.port}",
                  file=sys.stderr, flush=True)
            async for signum in signals:
                print(f"casebridge stopping (signal {signum})", file=sys.stderr, flush=True)
                tg.cancel_scope.cancel()
                break
    return 0


async def cmd_check(args: argparse.Namespace) -> int:
    async def work(bridge: Bridge) -> int:
        failures = 0
        for failure in bridge.load_report.failures:
            print(f"{failure.name}: not loaded: {failure.error}")
            failures += 1
        for name in bridge.plugin_names():
            result = await bridge.hooks.check(name, bridge)
            print(f"{name}: {result.detail if result.ok else 'FAILED: ' + result.detail}")
            failures += not result.ok
        return 1 if failures else 0

    return await _with_store(args, work)


def cmd_init(args: argparse.Namespace) -> int:
    path: Path = args.path
    if path.exists() and not args.force:
        raise CasebridgeError(f"{path} exists; pass --force to overwrite it")
    path.write_text(tomli_w.dumps(starter_config()))
    print(f"wrote {path}; start with: casebridge run --config {path}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    pm = new_manager()
    report = load_entry_points(pm, enabled=None, strict=False, quiet=True)
    rows = describe(pm, report.sources)
    if args.json:
        print(json.dumps([r.__dict__ | {"hooks": list(r.hooks)} for r in rows], indent=2))
    else:
        for row in rows:
            print(f"{row.name} {row.version}  ({row.source})\n  hooks: {', '.join(row.hooks)}")
    for failure in report.failures:
        print(f"{failure}", file=sys.stderr)
    return 1 if report.failures else 0


async def cmd_sessions_list(args: argparse.Namespace) -> int:
    async def work(bridge: Bridge) -> int:
        status = SessionStatus(args.status) if args.status else None
        for s in await bridge.store.list_sessions(status=status, limit=args.limit):
            case = s.case.number or s.case.case_id if s.case else "-"
            who = ", ".join(s.contact.emails + s.contact.phones)
            print(f"{s.id}  {s.channel:6} {s.status.value:10} case {case:12} {who}")
        return 0

    return await _with_store(args, work)


async def cmd_sessions_show(args: argparse.Namespace) -> int:
    async def work(bridge: Bridge) -> int:
        session = await bridge.store.get_session(args.session)
        if session is None:
            raise CasebridgeError(f"no session {args.session}")
        print(f"session {session.id} ({session.channel}, {session.status.value})")
        if session.case:
            print(f"case {session.case.number or session.case.case_id} in {session.case.crm}")
        print(f"link {bridge.session_link(session.id)}")
        for m in await bridge.store.transcript(session.id):
            print(f"\n[{m.sent_at:%Y-%m-%d %H:%M}] {m.author.value} {m.sender}\n{m.text}")
        return 0

    return await _with_store(args, work)


async def cmd_handoff(args: argparse.Namespace) -> int:
    async def work(bridge: Bridge) -> int:
        session = await bridge.store.get_session(args.session)
        if session is None:
            raise CasebridgeError(f"no session {args.session}")
        if session.status is SessionStatus.CLOSED:
            raise CasebridgeError(f"session {args.session} is closed")
        await bridge.store.enqueue([bridge.pipeline.handoff_job(
            session.id, HandoffDecision(args.reason, "cli"), new_trace_id())])
        print(f"handoff of {session.id} queued; the running bridge writes the case")
        return 0

    return await _with_store(args, work)


async def cmd_sessions_close(args: argparse.Namespace) -> int:
    async def work(bridge: Bridge) -> int:
        session = await bridge.store.get_session(args.session)
        if session is None:
            raise CasebridgeError(f"no session {args.session}")
        if session.status is SessionStatus.CLOSED:
            raise CasebridgeError(f"session {args.session} is closed already")
        await bridge.store.enqueue([bridge.pipeline.close_job(session.id, new_trace_id())])
        print(f"closing {session.id} queued; the running bridge closes it and tells the CRM")
        return 0

    return await _with_store(args, work)


async def cmd_outbox_list(args: argparse.Namespace) -> int:
    async def work(bridge: Bridge) -> int:
        jobs = await bridge.store.list_jobs(state=args.state, limit=args.limit)
        for job in jobs:
            error = f"  last error: {job.last_error}" if job.last_error else ""
            print(f"{job.id:6} {job.kind:8} {job.state:8} attempts {job.attempts}"
                  f"  {job.key}{error}")
        counts = await bridge.store.job_counts()
        print(", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no jobs")
        return 0

    return await _with_store(args, work)


async def cmd_outbox_replay(args: argparse.Namespace) -> int:
    async def work(bridge: Bridge) -> int:
        count = await bridge.store.replay_dead(args.ids or None)
        print(f"{count} dead job(s) queued again")
        return 0

    return await _with_store(args, work)


async def cmd_migrate(args: argparse.Namespace) -> int:
    """Apply the configured store's pending migrations (opening a store does the same; this
    lets a deployment migrate once before starting several runners)."""
    config = load_config(args.config)
    if config.store.url is None:
        config.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store_for(config)
    await store.open()
    try:
        version = await store.schema_version()  # type: ignore[attr-defined]
    finally:
        await store.close()
    print(f"{store!r}: schema version {version}")
    return 0


def core_commands() -> list[Command]:
    def sessions_list(p: argparse.ArgumentParser) -> None:
        _config_arg(p)
        p.add_argument("--status", choices=[s.value for s in SessionStatus])
        p.add_argument("--limit", type=int, default=50)

    def session_arg(p: argparse.ArgumentParser) -> None:
        _config_arg(p)
        p.add_argument("session", help="the session id")

    def handoff(p: argparse.ArgumentParser) -> None:
        session_arg(p)
        p.add_argument("--reason", default="handed off by an operator")

    def outbox_list(p: argparse.ArgumentParser) -> None:
        _config_arg(p)
        p.add_argument("--state", choices=["pending", "running", "done", "dead"])
        p.add_argument("--limit", type=int, default=100)

    def outbox_replay(p: argparse.ArgumentParser) -> None:
        _config_arg(p)
        p.add_argument("ids", nargs="*", type=int, help="job ids (default: every dead job)")

    def init(p: argparse.ArgumentParser) -> None:
        p.add_argument("path", nargs="?", type=Path, default=Path(DEFAULT_CONFIG))
        p.add_argument("--force", action="store_true")

    def plugins(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true")

    return [
        Command(("run",), "run the bridge until stopped", _config_arg, cmd_run),
        Command(("check",), "tell whether each enabled plugin works", _config_arg, cmd_check),
        Command(("init",), "write a starting configuration", init, cmd_init),
        Command(("plugins",), "list installed plugins and their hooks", plugins, cmd_plugins),
        Command(("sessions", "list"), "list sessions", sessions_list, cmd_sessions_list),
        Command(("sessions", "show"), "show one session's transcript", session_arg,
                cmd_sessions_show),
        Command(("sessions", "close"), "close a session (and resolve its case, if set)",
                session_arg, cmd_sessions_close),
        Command(("handoff",), "hand a session to a human now", handoff, cmd_handoff),
        Command(("outbox", "list"), "list outbox jobs", outbox_list, cmd_outbox_list),
        Command(("outbox", "replay"), "queue dead jobs again", outbox_replay, cmd_outbox_replay),
        Command(("migrate",), "apply the store's pending schema migrations", _config_arg,
                cmd_migrate),
    ]


# -- assembly -----------------------------------------------------------------------------


def plugin_commands() -> list[Command]:
    """Subcommands of every installed plugin that loads (they act only when run)."""
    pm = new_manager()
    # Failures are reported by the commands that load plugins for real.
    load_entry_points(pm, enabled=None, strict=False, quiet=True)
    return [c for group in pm.hook.cli_commands() for c in group]


def build_parser(commands: Sequence[Command]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="casebridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"casebridge {__version__}")
    groups: dict[tuple[str, ...], Any] = {(): parser.add_subparsers(dest="command",
                                                                     metavar="COMMAND")}
    for command in sorted(commands, key=lambda c: c.path):
        for depth in range(1, len(command.path)):
            prefix = command.path[:depth]
            if prefix not in groups:
                sub = groups[prefix[:-1]].add_parser(prefix[-1], help=f"{prefix[-1]} commands")
                groups[prefix] = sub.add_subparsers(dest="_".join(prefix), metavar="COMMAND",
                                                    required=True)
        leaf = groups[command.path[:-1]].add_parser(command.path[-1], help=command.help,
                                                    description=command.help)
        command.configure(leaf)
        leaf.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    configure_logging("WARNING", json=False)
    # One line per HTTP request is noise at INFO; httpx's warnings still show.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    parser = build_parser([*core_commands(), *plugin_commands()])
    args = parser.parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:
        parser.print_help()
        return 2
    try:
        result = run(args)
        if inspect.isawaitable(result):
            return anyio.run(_await, result)
        return int(result)
    except CasebridgeError as exc:
        print(f"casebridge: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"casebridge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _await(awaitable: Any) -> int:
    return int(await awaitable)


if __name__ == "__main__":
    sys.exit(main())
