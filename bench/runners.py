"""Several runners on one PostgreSQL: a burst of SMTP conversations through ``casebridge run``
processes to Creatio-sandbox cases, with 1, 2 and 4 runners, each row against the 1-runner
row of the same run.

Usage::

    .venv/bin/python bench/runners.py                 # 600 conversations per row
    .venv/bin/python bench/runners.py --conversations 1000 --counts 1 2 3 4
    .venv/bin/python bench/runners.py --quick         # the smoke test: small and fast

Each row is a fresh deployment, as ``tests/e2e/test_e2e_runners.py`` builds it: a throw-away
PostgreSQL (one server for the run, a fresh database per row), one Creatio sandbox process,
an SMTP sink for replies, and N ``casebridge run`` processes sharing the database and one
data folder (outbox: 4 workers each; logging at WARNING). Every conversation is one email
asking for a person, so each is one handoff: contact, case, activity. The client sends them
on ``--clients`` SMTP connections at once, spread over the runners as a TCP load balancer
would.

* msgs/s: conversations divided by the time from the first send to the last ``250``;
* handoffs/s: conversations divided by the time from the first send until the outbox has
  nothing pending or running (every case and activity written; checked against Creatio);
* CPU: seconds of CPU each group of processes used over that span (from ``/proc``), all of
  it per conversation, and all of it divided by the span: the cores kept busy. When that is
  near the machine's core count (or the share of it other work leaves), the CPU is what
  limits the row, and more runners only share it: the ceiling is about cores divided by
  CPU per handoff.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import common  # puts core/, the plugins and tests/ on sys.path

sys.path.insert(0, str(common.ROOT / "tests" / "e2e"))

import psycopg
from load import CrmReader, conversations, problems
from runners import Cluster, SpreadSender
from support.postgres import PostgresServer

OVERRIDES = {
    "outbox": {"workers": 4, "poll_seconds": 0.5, "lease_seconds": 30.0},
    "logging": {"level": "WARNING", "json": True},
    # The poll is a singleton: it runs on one runner whatever the count; 60 s keeps it out
    # of the figures.
    "plugins": {"creatio": {"reconcile_interval": 60.0}},
}


@dataclass
class Row:
    runners: int
    conversations: int
    ingest_seconds: float
    total_seconds: float
    cpu: dict[str, float]

    @property
    def msgs_per_s(self) -> float:
        return self.conversations / self.ingest_seconds

    @property
    def handoffs_per_s(self) -> float:
        return self.conversations / self.total_seconds


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its reaped children; 0 once it is gone."""
    return common.process_cpu(pid, reaped_children=True)


def postgres_pids(server: PostgresServer) -> list[int]:
    """The postmaster and its backends."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == postmaster:
                pids.append(int(entry.name))
    return pids


def cpu_by_group(cluster: Cluster, server: PostgresServer) -> dict[str, float]:
    assert cluster.hub is not None
    return {
        "runners": sum(cpu_seconds(r.processes["bridge"].pid) for r in cluster.runners),
        "sandbox": cpu_seconds(cluster.hub.processes["creatio"].pid),
        "postgres": sum(cpu_seconds(pid) for pid in postgres_pids(server)),
        "client": cpu_seconds(os.getpid()),
    }


def unfinished(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM jobs WHERE state IN ('pending', 'running')"
                           ).fetchone()
    return int(row[0]) if row else 0


@contextmanager
def deployment(server: PostgresServer, folder: Path, runners: int) -> Iterator[Cluster]:
    cluster = Cluster(folder, server.new_database(f"runners{runners}"), runners, OVERRIDES)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def measure(server: PostgresServer, folder: Path, runners: int, count: int,
            clients: int, timeout: float) -> Row:
    load = conversations(f"bench{runners}", count, follow_up_every=0)
    with deployment(server, folder / f"runners-{runners}", runners) as cluster:
        reader = CrmReader(cluster.first)
        before = reader.snapshot()
        sender = SpreadSender(cluster)
        cpu_before = cpu_by_group(cluster, server)
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            for done in [pool.submit(sender.send_all, n, c) for n, c in enumerate(load)]:
                done.result()
        ingested = time.perf_counter() - started
        deadline = time.monotonic() + timeout
        while unfinished(cluster.store_url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{runners} runner(s): not done after {timeout:.0f} s")
            time.sleep(0.2)
        total = time.perf_counter() - started
        cpu_after = cpu_by_group(cluster, server)
        wrong = problems(load, before, reader.snapshot())
        reader.close()
        if wrong:
            raise RuntimeError(f"{runners} runner(s): {wrong[:5]}")
    cpu = {k: cpu_after[k] - cpu_before[k] for k in cpu_before}
    return Row(runners, count, ingested, total, cpu)


def rows_of(results: Sequence[Row]) -> list[list[str]]:
    base = results[0]
    out = []
    for r in results:
        busy = sum(r.cpu.values()) / r.total_seconds
        out.append([
            f"{r.runners}", f"{r.conversations:,}",
            f"{r.msgs_per_s:.1f}", f"{r.msgs_per_s / base.msgs_per_s:.2f}x",
            f"{r.handoffs_per_s:.1f}", f"{r.handoffs_per_s / base.handoffs_per_s:.2f}x",
            f"{r.cpu['runners']:.1f}", f"{r.cpu['sandbox']:.1f}", f"{r.cpu['postgres']:.1f}",
            f"{r.cpu['client']:.1f}", f"{sum(r.cpu.values()) / r.conversations * 1000:.0f}",
            f"{busy:.2f}",
        ])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=600,
                        help="conversations (one handoff each) per row (600)")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4],
                        help="runner counts, the first is the baseline (1 2 4)")
    parser.add_argument("--clients", type=int, default=8,
                        help="SMTP connections sending at once (8)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds a row may take to finish its handoffs (600)")
    parser.add_argument("--quick", action="store_true", help="20 conversations per row")
    args = parser.parse_args(argv)
    count = 20 if args.quick else args.conversations
    with tempfile.TemporaryDirectory() as tmp, PostgresServer.running() as server:
        results = [measure(server, Path(tmp), n, count, args.clients, args.timeout)
                   for n in args.counts]
    common.report(
        "Runners on one PostgreSQL: SMTP conversations to Creatio-sandbox cases",
        [f"{count} conversations per row, one handoff each, on {args.clients} SMTP "
         "connections spread over the runners; 4 outbox workers per runner; one Creatio "
         "sandbox process; PostgreSQL with fsync off (a throw-away server).",
         "CPU columns: seconds used over the row by all runners, the sandbox, PostgreSQL and "
         "the client; CPU ms/handoff = all of it per conversation; busy cores = all of it "
         "per second of the row. The handoff ceiling of this machine is about its cores "
         "divided by CPU per handoff, whatever the runner count."],
        ["runners", "conversations", "msgs/s", "× 1 runner", "handoffs/s", "× 1 runner",
         "CPU runners s", "CPU sandbox s", "CPU postgres s", "CPU client s", "CPU ms/handoff",
         "busy cores"],
        rows_of(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
