"""Handoffs (contact, case and N activities) per second, their latency, the bridge's CPU time
and the Creatio requests each one costs, against the Creatio sandbox with an injected
per-request latency: the two-round-trip handoff against today's per-step sequence.

Usage::

    .venv/bin/python bench/handoff.py                  # 50 ms per Creatio request
    .venv/bin/python bench/handoff.py --latency-ms 20
    .venv/bin/python bench/handoff.py --quick          # the smoke test: small and fast
    .venv/bin/python bench/handoff.py --modes atomic --contacts new --messages 5 \
        --workers 32 --profile /tmp/handoff.prof         # one row, profiled (cProfile)

The Creatio sandbox runs as its own process on loopback (``casebridge sandbox creatio``), its
fault settings holding ``latency_ms``. Each row is a fresh, real Bridge (SQLite store, the
creatio plugin pointed at the sandbox, the loopback test channel) running its outbox with
``workers`` workers. Sessions of N customer messages are made through ``Bridge.receive``;
then one handoff job per session (``casebridge.jobs.HandoffJob``) is enqueued at once and the
outbox works them. Two modes, measured in the same run:

* two round trips (``atomic_handoff = true``): one ``$batch`` of reads, one atomic
  ``$batch`` of writes (contact, case, activities);
* per step, today's sequence and the baseline (``atomic_handoff = false``): contact lookup
  and create, open-case lookup, case, then the activities in one ``$batch``.

"new" rows hand off customers Creatio has never seen; "returning" rows first hand off and
close one session per customer (not measured), then hand off a second session of the same
customers, which is appended to their open case.

* latency: from the handoff job being claimed to its sync job done;
* throughput: handoffs divided by the time from enqueueing them to the last one done;
* CPU ms/handoff: the bridge process's CPU time over that span, per handoff;
* requests/handoff: the sandbox's API request count (``/sandbox/admin/stats``) over the
  handoffs, divided by their number; every case is then checked to hold its activities.

The bridge runs pinned to one core and the sandbox to another when there are two.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common
import httpx

SUPERVISOR = "Supervisor"
DESK = "desk"


ATOMIC, STEPS = "two round trips", "per step (baseline)"
ATOMIC_MODE, STEPS_MODE = "atomic", "steps"
# The sandbox process, whose CPU time is read from /proc around each measurement.
SANDBOX_PID = [0]


@dataclass
class Run:
    atomic: bool
    returning: bool
    messages: int
    workers: int
    handoffs: int
    max_concurrency: int = 32
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cpu: float = 0.0
    sandbox_cpu: float = 0.0
    requests: int = 0

    @property
    def mode(self) -> str:
        return ATOMIC if self.atomic else STEPS

    @property
    def contact(self) -> str:
        return "returning" if self.returning else "new"


@contextmanager
def sandbox(folder: Path, core: int | None) -> Iterator[str]:
    """A Creatio sandbox process on a free loopback port, pinned to ``core`` if given;
    yields its URL."""
    port = common.free_port()
    log = (folder / "sandbox.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "casebridge.cli", "sandbox", "creatio", "--port", str(port)],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        preexec_fn=(lambda: os.sched_setaffinity(0, {core})) if core is not None else None,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/sandbox/cases", timeout=2).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the Creatio sandbox did not start: "
                                   + (folder / "sandbox.log").read_text()[-2000:])
            time.sleep(0.05)
        SANDBOX_PID[0] = process.pid
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)


def write_config(folder: Path, url: str, run: Run) -> Path:
    import tomli_w

    config: dict[str, Any] = {
        "bridge": {"crm": "creatio", "channels": ["loop"], "data_dir": "data",
                   "public_url": "http://127.0.0.1:8080"},
        "http": {"host": "127.0.0.1", "port": common.free_port()},
        "outbox": {"workers": run.workers, "poll_seconds": 0.5, "backoff_base": 0.05,
                   "backoff_cap": 0.5, "jitter": 0.0},
        "handoff": {"max_customer_turns": 0},
        "logging": {"level": "WARNING"},
        "plugins": {"creatio": {
            "url": url, "auth": "login", "username": SUPERVISOR, "password": SUPERVISOR,
            "atomic_handoff": run.atomic, "max_concurrency": run.max_concurrency,
            "reconcile_interval": 0,
            "upload_attachments": False,
            "webhook_token": "bench-webhook-token-0123456789",
        }},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "casebridge.toml"
    path.write_text(tomli_w.dumps(config))
    return path


async def measure(url: str, folder: Path, run: Run, profile: Path | None = None) -> None:
    import anyio
    from casebridge.bridge import Bridge
    from casebridge.jobs import HandoffJob, session_of
    from casebridge.model import HandoffDecision, SessionStatus
    from casebridge.outbox import OutboxEvent
    from support.plugins import LoopChannel

    claimed: dict[str, float] = {}
    finished: dict[str, float] = {}

    class TimedBridge(Bridge):
        # The outbox reports every job event here; the handoff's start and the end of the
        # sync job it enqueues bracket one handoff.
        def _job_event(self, event: OutboxEvent) -> None:
            super()._job_event(event)
            session_id = session_of(event.job)
            if event.kind == "claimed" and event.job.kind == "handoff":
                claimed.setdefault(session_id, time.perf_counter())
            elif event.kind == "done" and event.job.key == f"sync:{session_id}:handoff":
                finished[session_id] = time.perf_counter()
            elif event.kind in ("retry", "dead"):
                print(f"  {event.kind} {event.job.kind}: {event.error}", file=sys.stderr)

    bridge = TimedBridge.from_config(write_config(folder, url, run),
                                     plugins={"loop": LoopChannel()})
    decision = HandoffDecision("benchmark", "bench")
    async with httpx.AsyncClient(base_url=url, timeout=30) as admin, \
            anyio.create_task_group() as tg:
        await tg.start(bridge.run)
        # Sign-in and the case statuses, which the runner loads at start-up, are not counted.
        await (await bridge.pm.get_plugin("creatio").operations()).prepare()
        await receive(bridge, folder.name, run, "first")
        if run.returning:
            # Each customer's first session is handed off and closed; its case stays open.
            first = await bridge.store.list_sessions(limit=run.handoffs + 1)
            await bridge.enqueue(*(HandoffJob.deciding(s.id, decision).to_new_job() for s in first))
            await settle(bridge)
            for session in first:
                await bridge.store.update_session(session.id, status=SessionStatus.CLOSED)
            await receive(bridge, folder.name, run, "again")
        sessions = await bridge.store.list_sessions(status=SessionStatus.ASSISTANT,
                                                    limit=run.handoffs + 1)
        assert len(sessions) == run.handoffs, len(sessions)
        claimed.clear()
        finished.clear()
        before = (await admin.get("/sandbox/admin/stats")).json()["requests"]
        cpu, start = time.process_time(), time.perf_counter()
        sandbox_cpu = common.process_cpu(SANDBOX_PID[0])
        with profiled(profile):
            await bridge.enqueue(*(HandoffJob.deciding(s.id, decision).to_new_job()
                                   for s in sessions))
            await settle(bridge)
            # A job's state is committed a moment before the outbox reports it done.
            with anyio.fail_after(30):
                while len(finished) < len(sessions):  # noqa: ASYNC110 - filled by the outbox
                    await anyio.sleep(0.01)
        run.cpu = time.process_time() - cpu
        run.sandbox_cpu = common.process_cpu(SANDBOX_PID[0]) - sandbox_cpu
        run.seconds = max(finished.values()) - start
        run.requests = (await admin.get("/sandbox/admin/stats")).json()["requests"] - before
        run.latencies = [finished[s.id] - claimed[s.id] for s in sessions]
        await check_cases(bridge, admin, run, [s.id for s in sessions])
        tg.cancel_scope.cancel()


@contextmanager
def profiled(path: Path | None) -> Iterator[None]:
    """cProfile the bridge process (every thread that runs Python: the event loop and the
    store's worker threads) over the block, written to ``path``; nothing when None. A path
    ending in ``.txt`` gets py-spy's samples instead (collapsed stacks, py-spy on the other
    core): far less overhead than cProfile, so shares nearer the unprofiled run's."""
    if path is None:
        yield
        return
    if path.suffix == ".txt":
        with sampled(path):
            yield
        return
    import cProfile
    import threading

    # CPU time, not wall time: the figures hold on a machine busy with other work.
    profiles = [cProfile.Profile(time.thread_time)]

    def start_thread_profile(*_: Any) -> None:
        profile = cProfile.Profile(time.thread_time)
        profiles.append(profile)
        profile.enable()  # replaces this hook for the rest of the thread

    threading.setprofile(start_thread_profile)
    profiles[0].enable()
    try:
        yield
    finally:
        profiles[0].disable()
        threading.setprofile(None)
        for profile in profiles[1:]:
            profile.create_stats()  # snapshot threads still running (the store's pool)
        import pstats

        stats = pstats.Stats(profiles[0])
        for profile in profiles[1:]:
            if getattr(profile, "stats", None):
                stats.add(profile)
        stats.dump_stats(path)


@contextmanager
def sampled(path: Path) -> Iterator[None]:
    """py-spy samples of this process over the block, in collapsed stacks, into ``path``."""
    import shutil
    import signal

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    core = common.other_core()
    process = subprocess.Popen(
        [spy, "record", "--threads", "--nonblocking", "--format", "raw", "--rate", "200",
         "-o", str(path), "--pid", str(os.getpid())],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=(lambda: os.sched_setaffinity(0, {core})) if core is not None else None,
    )
    time.sleep(1.0)  # py-spy attaches
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        process.wait(timeout=60)


async def receive(bridge: Any, tag: str, run: Run, round_: str) -> None:
    from casebridge.model import RawInbound

    for s in range(run.handoffs):
        for i in range(run.messages):
            await bridge.receive(RawInbound(channel="loop", fields={
                "from": f"{tag}-{s}@example.com", "to": DESK, "id": f"{tag}-{round_}-{s}-{i}",
                "name": f"Customer {s}", "subject": f"Printer broken ({round_})",
                "body": f"Message {i}: the printer shows error E{i:02d} again."}))
    await settle(bridge)


async def settle(bridge: Any) -> None:
    import anyio

    # Only the runner's own outbox loops work the jobs: a drain() here would add workers.
    with anyio.fail_after(600):
        while True:
            counts = await bridge.store.job_counts()
            if counts.get("dead"):
                raise RuntimeError(f"jobs died: {await bridge.store.list_jobs('dead')}")
            if not counts.get("pending") and not counts.get("running"):
                return
            await anyio.sleep(0.02)


async def check_cases(bridge: Any, admin: httpx.AsyncClient, run: Run,
                      session_ids: Sequence[str]) -> None:
    """Every handed-off session's case holds its N activities (returning customers' cases
    2N: both sessions'), read with no latency."""
    latency = (await admin.get("/sandbox/admin/faults")).json()["latency_ms"]
    await admin.post("/sandbox/admin/faults", json={"latency_ms": 0})
    expected = run.messages * (2 if run.returning else 1)
    try:
        login = await admin.post("/ServiceModel/AuthService.svc/Login",
                                 json={"UserName": SUPERVISOR, "UserPassword": SUPERVISOR})
        headers = {"BPMCSRF": login.cookies["BPMCSRF"], "ForceUseSession": "true"}
        for session_id in session_ids:
            session = await bridge.store.get_session(session_id)
            assert session is not None and session.case is not None, session
            answer = await admin.get("/0/odata/Activity", headers=headers, params={
                "$filter": f"CaseId eq {session.case.case_id}", "$select": "Id"})
            found = len(answer.json()["value"])
            if found != expected:
                raise RuntimeError(f"case {session.case.case_id} has {found} activities, "
                                   f"expected {expected}")
    finally:
        await admin.post("/sandbox/admin/faults", json={"latency_ms": latency})


def rows(runs: Sequence[Run]) -> list[list[object]]:
    baseline = {(r.contact, r.messages, r.workers): r for r in runs if not r.atomic}
    out: list[list[object]] = []
    for r in runs:
        # Without the per-step row of the same contact, N and workers in this run (--modes
        # atomic), there is no baseline to compare with: the ratios are left out, not 1.00x.
        base = baseline.get((r.contact, r.messages, r.workers))
        per = r.requests / r.handoffs
        out.append([
            r.mode, r.contact, r.messages, r.workers, r.handoffs,
            f"{r.handoffs / r.seconds:.1f}",
            f"{common.percentile(r.latencies, 50) * 1000:,.0f}",
            f"{common.percentile(r.latencies, 99) * 1000:,.0f}",
            f"{r.cpu / r.handoffs * 1000:.1f}", f"{r.sandbox_cpu / r.handoffs * 1000:.1f}",
            f"{per:.1f}",
            "—" if base is None else f"{per / (base.requests / base.handoffs):.2f}×",
            "—" if base is None else
            f"{(r.handoffs / r.seconds) / (base.handoffs / base.seconds):.2f}×",
        ])
    return out


def plan(args: argparse.Namespace) -> list[Run]:
    """Every chosen contact kind, N and worker count, in each chosen mode."""
    runs = []
    for atomic in (False, True):
        if (ATOMIC_MODE if atomic else STEPS_MODE) not in args.modes:
            continue
        for workers in args.workers:
            for messages in args.messages:
                for returning in (False, True):
                    if ("returning" if returning else "new") not in args.contacts:
                        continue
                    handoffs = max(workers * args.per_worker, 2 if args.quick else 8)
                    runs.append(Run(atomic, returning, messages, workers, handoffs,
                                    args.max_concurrency))
    return runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=int, default=50,
                        help="latency the sandbox adds to every API request (50)")
    parser.add_argument("--messages", type=int, nargs="+", default=[1, 5, 20],
                        help="messages per session, N (1 5 20)")
    parser.add_argument("--workers", type=int, nargs="+", default=[4, 32],
                        help="outbox workers (4 32): 32 keeps over 20 handoffs in flight")
    parser.add_argument("--per-worker", type=int, default=4,
                        help="handoffs per row: this many per worker, at least 8 (4)")
    parser.add_argument("--max-concurrency", type=int, default=32,
                        help="the creatio plugin's max_concurrency (32)")
    parser.add_argument("--modes", nargs="+", choices=[ATOMIC_MODE, STEPS_MODE],
                        default=[STEPS_MODE, ATOMIC_MODE],
                        help="atomic: two round trips; steps: the per-step baseline (both)")
    parser.add_argument("--contacts", nargs="+", choices=["new", "returning"],
                        default=["new", "returning"], help="contact kinds (both)")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="cProfile the bridge over the measured span of the (last) row "
                             "into FILE (read it with python -m pstats); a FILE ending in "
                             ".txt gets py-spy samples (collapsed stacks) instead")
    parser.add_argument("--quick", action="store_true",
                        help="N 1 and 5, workers 1 and 4, 2 handoffs per worker, 10 ms")
    args = parser.parse_args(argv)
    if args.quick:
        args.latency_ms, args.messages, args.workers, args.per_worker = 10, [1, 5], [1, 4], 2

    import logging

    import anyio

    logging.basicConfig(level=logging.WARNING)
    sandbox_core = common.other_core()
    pinned = common.pin_to_one_core()
    runs = plan(args)
    with tempfile.TemporaryDirectory(prefix="casebridge-bench-") as tmp, \
            sandbox(Path(tmp), sandbox_core) as url:
        httpx.post(url + "/sandbox/admin/faults", json={"latency_ms": args.latency_ms},
                   timeout=10).raise_for_status()
        for n, run in enumerate(runs):
            folder = Path(tmp) / f"r{n}a{int(run.atomic)}w{run.workers}n{run.messages}"
            anyio.run(measure, url, folder, run, args.profile)
    runs.sort(key=lambda r: (r.returning, r.workers, r.messages, r.atomic))
    common.report(
        "Handoff: contact, case and N activities against the Creatio sandbox",
        [f"Sandbox latency {args.latency_ms} ms per API request; creatio max_concurrency "
         f"{args.max_concurrency}.",
         f"Bridge process {pinned}; the sandbox runs in its own process"
         + (f" pinned to core {sandbox_core}." if sandbox_core is not None else "."),
         "Latency: handoff job claimed → its activities written. CPU: the bridge process. "
         "Ratios against the per-step baseline with the same contact, N and workers."],
        ["mode", "contact", "N", "workers", "handoffs", "handoffs/s", "p50 ms", "p99 ms",
         "CPU ms/handoff", "sandbox CPU ms/handoff", "requests/handoff", "requests vs baseline",
         "throughput vs baseline"],
        rows(runs),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
