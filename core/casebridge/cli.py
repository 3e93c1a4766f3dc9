"""The ``casebridge`` command. Errors are one clear line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import tomli_w

from . import __version__, deliveries
from .addresses import render_block
from .bridge import Bridge
from .config import load as load_config
from .contributions import Command
from .errors import CasebridgeError
from .idprefix import resolve_prefix
from .jobs import CloseJob, HandoffJob
from .logs import configure_logging, new_trace_id
from .model import Session, SessionStatus
from .plugins import describe, load_entry_points, new_manager
from .ports import address_in_use, busy, listen_settings, port_in_use_message
from .starter import starter_config
from .stores import open_store_for

DEFAULT_CONFIG = "casebridge.toml"
# How many ids a session prefix looks up to tell "unique" from "ambiguous" and list some.
PREFIX_LOOKUP = 10


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, default=Path(DEFAULT_CONFIG),
                        help=f"the TOML file (default: {DEFAULT_CONFIG})")


def _bridge(args: argparse.Namespace, *, report: bool = False) -> Bridge:
    """The configured bridge. ``report``: a command whose output is its report, where the
    INFO lines a running bridge logs (a plugin signing in...) would only be noise."""
    bridge = Bridge.from_config(args.config)
    level = bridge.config.logging.level
    if report and level in ("DEBUG", "INFO"):
        level = "WARNING"
    configure_logging(level, bridge.config.logging.json)
    return bridge


async def _with_store(args: argparse.Namespace, work: Callable[[Bridge], Any]) -> int:
    bridge = _bridge(args, report=True)
    await bridge.open()
    try:
        return await work(bridge)
    finally:
        await bridge.close()


async def _find_session(bridge: Bridge, given: str) -> Session:
    """The session ``given`` names: its id, or a unique start of it (as git takes commits)."""
    session = await bridge.store.get_session(given)
    if session is not None:
        return session
    prefix = given.strip().lower()
    matches = await bridge.store.session_ids_with_prefix(prefix, limit=PREFIX_LOOKUP + 1)
    found = resolve_prefix(prefix, matches[:PREFIX_LOOKUP], more=len(matches) > PREFIX_LOOKUP)
    session = await bridge.store.get_session(found)
    if session is None:
        raise CasebridgeError(f"no session {given}")
    return session


# -- core commands ------------------------------------------------------------------------


async def cmd_run(args: argparse.Namespace) -> int:
    bridge = _bridge(args)
    try:
        with anyio.open_signal_receiver(2, 15) as signals:  # SIGINT, SIGTERM
            async with anyio.create_task_group() as tg:
                await tg.start(bridge.run)
                print(f"casebridge {__version__} running: plugins "
                      f"{', '.join(bridge.plugin_names())}"
                      f"; HTTP on http://{bridge.config.http.host}:{bridge.config.http.port}\n"
                      f"{render_block(bridge.addresses())}", file=sys.stderr, flush=True)
                async for signum in signals:
                    print(f"casebridge stopping (signal {signum})", file=sys.stderr, flush=True)
                    tg.cancel_scope.cancel()
                    break
    except Exception as exc:
        in_use = address_in_use(exc)
        if in_use is None:
            raise
        raise CasebridgeError(_port_in_use(bridge, in_use)) from None
    return 0


def _port_in_use(bridge: Bridge, error: OSError) -> str:
    # A second runner on the same ports is the usual cause: name the port and its key.
    settings = {name: bridge.settings(name) for name in bridge.plugin_names()}
    http = bridge.config.http
    taken = [s for s in listen_settings(http.host, http.port, settings) if busy(s.host, s.port)]
    return port_in_use_message(taken, str(bridge.config.path), str(error))


async def cmd_check(args: argparse.Namespace) -> int:
    async def work(bridge: Bridge) -> int:
        failures = 0
        for failure in bridge.load_report.failures:
            print(f"{failure.name}: not loaded: {failure.error}")
            failures += 1
        for name in bridge.plugin_names():
            result = await bridge.hooks.check(name)
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
        sessions = await bridge.store.list_sessions(status=status, limit=args.limit)
        if not sessions:
            print("no sessions" + (f" {status.value}" if status else ""), file=sys.stderr)
            return 0
        print(f"{'SESSION':36}  {'CHANNEL':6} {'STATUS':10} {'CASE':17} CONTACT")
        for s in sessions:
            case = s.case.number or s.case.case_id if s.case else "-"
            who = ", ".join(s.contact.emails + s.contact.phones)
            print(f"{s.id}  {s.channel:6} {s.status.value:10} case {case:12} {who}")
        return 0

    return await _with_store(args, work)


async def cmd_sessions_show(args: argparse.Namespace) -> int:
    async def work(bridge: Bridge) -> int:
        session = await _find_session(bridge, args.session)
        print(f"session {session.id} ({session.channel}, {session.status.value})")
        if session.case:
            print(f"case {session.case.number or session.case.case_id} in {session.case.crm}")
        print(f"link {bridge.session_link(session.id)}")
        transcript = await bridge.store.transcript(session.id)
        states = await deliveries.for_transcript(bridge.store, transcript)
        for m in transcript:
            state = (f"  [{deliveries.describe(states.get(m.id))}]"
                     if deliveries.tracked(m) else "")
            print(f"\n[{m.sent_at:%Y-%m-%d %H:%M}] {m.author.value} {m.sender}{state}\n{m.text}")
        return 0

    return await _with_store(args, work)


async def cmd_handoff(args: argparse.Namespace) -> int:
    async def work(bridge: Bridge) -> int:
        session = await _find_session(bridge, args.session)
        if session.status is SessionStatus.CLOSED:
            raise CasebridgeError(f"session {session.id} is closed")
        await bridge.store.enqueue([
            HandoffJob(session.id, args.reason, "cli", new_trace_id()).to_new_job()])
        print(f"handoff of {session.id} queued; the running bridge writes the case")
        return 0

    return await _with_store(args, work)


async def cmd_sessions_close(args: argparse.Namespace) -> int:
    async def work(bridge: Bridge) -> int:
        session = await _find_session(bridge, args.session)
        if session.status is SessionStatus.CLOSED:
            raise CasebridgeError(f"session {session.id} is closed already")
        await bridge.store.enqueue([CloseJob(session.id, new_trace_id()).to_new_job()])
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
        version = await store.schema_version()
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
        p.add_argument("session", help="the session id, or a unique start of it")

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
    except BrokenPipeError:
        return _reader_went_away()
    except OSError as exc:
        print(f"casebridge: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _reader_went_away() -> int:
    """``casebridge outbox list | head``: the reader closed the pipe, which is no error.

    As the Python docs advise: point stdout at /dev/null so the interpreter's flush at exit
    does not fail again, and exit as a process killed by SIGPIPE would (128 + 13).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


async def _await(awaitable: Any) -> int:
    return int(await awaitable)


if __name__ == "__main__":
    sys.exit(main())
