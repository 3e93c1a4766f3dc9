"""Three `casebridge run` processes on one PostgreSQL under SIGKILL: 300 conversations over
SMTP spread across the runners (a third with a follow-up, usually taken by another runner
than the first message), a random runner killed with SIGKILL ten times and restarted after
each. Then: every message exactly one activity, every conversation one case with its
messages in order, no case or contact twice. One of the kills hits the runner holding the
Creatio reconcile poll (a singleton): another takes it over within seconds."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from casebridge.pgstore.locks import lock_key_sql
from deployment import Deployment, wait_for
from load import CrmReader, conversations, problems, wait_until_written
from runners import Cluster, SpreadSender
from support.postgres import PostgresServer, postgres_server

__all__ = ["postgres_server"]

pytestmark = pytest.mark.slow

RUNNERS = 3
CONVERSATIONS = 300
KILLS = 10
HOLDER_ROUND = 4  # this kill hits the runner holding the reconcile poll (a singleton)
# As in test_e2e_kill9: a short lease so a killed runner's jobs are taken up again soon, and
# a budget no job spends only because its runner was killed under it a few times.
OVERRIDES = {
    "outbox": {"workers": 4, "max_attempts": 40, "backoff_base": 0.1, "backoff_cap": 1.0,
               "lease_seconds": 1.5, "poll_seconds": 0.5},
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory,
            postgres_server: PostgresServer) -> Iterator[Cluster]:
    url = postgres_server.new_database("runners")
    running = Cluster(tmp_path_factory.mktemp("runners"), url, RUNNERS, OVERRIDES).start()
    try:
        yield running
    finally:
        running.stop()


def reconcile_holder(url: str) -> int | None:
    """The process id of the runner holding the Creatio reconcile poll's lock, or None."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT a.application_name FROM pg_locks AS l"
            " JOIN pg_stat_activity AS a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND"
            f" (l.classid::bigint << 32 | l.objid::bigint) = {lock_key_sql()}",
            ("creatio reconcile",)).fetchall()
    assert len(rows) <= 1, rows  # an advisory lock has one holder at most
    return int(rows[0][0].split()[2]) if rows else None


def test_three_runners_killed_at_random_lose_and_duplicate_nothing(cluster: Cluster) -> None:
    load = conversations("multi", CONVERSATIONS, follow_up_every=3)
    reader = CrmReader(cluster.first)
    before = reader.snapshot()
    sender = SpreadSender(cluster)
    rng = random.Random(12)
    per_round = CONVERSATIONS // KILLS
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        futures = []
        for round_ in range(KILLS):
            accepted = sum(sender.accepted_by.values())
            futures += [pool.submit(sender.send_all, n, load[n])
                        for n in range(round_ * per_round, (round_ + 1) * per_round)]
            # While this batch is being sent (a fixed pause could outlast the whole batch on
            # an idle machine, and cut no sender off), and so amid the earlier batches'
            # threading, handoffs and Creatio writes.
            mid_batch = accepted + rng.randint(per_round // 4, 3 * per_round // 4)
            deadline = time.monotonic() + 30
            while sum(sender.accepted_by.values()) < mid_batch and time.monotonic() < deadline:
                time.sleep(0.01)
            victim = cluster.runners[rng.randrange(RUNNERS)]
            if round_ == HOLDER_ROUND:
                victim = holder_of_the_poll(cluster)
            killed = victim.processes["bridge"].pid
            victim.stop_bridge(kill=True)
            if round_ == HOLDER_ROUND:
                # The killed runner's connection is gone, so is its lock: one of the two
                # others polls within the waiters' retry interval (before the restart).
                moved = time.monotonic()
                wait_for(lambda killed=killed: reconcile_holder(cluster.store_url)
                         not in (None, killed),
                         timeout=10, what="another runner to take the reconcile poll")
                print(f"reconcile poll moved {time.monotonic() - moved:.1f} s after its"
                      " holder's SIGKILL")
            victim.start_bridge()
        for future in futures:
            future.result()
    sent = time.monotonic() - started

    wait_until_written(cluster.first, reader, load, timeout=240)
    written = time.monotonic() - started
    print(f"{KILLS} kills; sent in {sent:.0f} s, all written after {written:.0f} s;"
          f" accepted per runner {dict(sender.accepted_by)}; resent after"
          f" {dict(sender.retries)}")
    assert problems(load, before, reader.snapshot()) == []
    # The load really was spread, and the kills really cut senders off.
    assert all(sender.accepted_by[n] > 0 for n in range(RUNNERS)), sender.accepted_by
    assert sum(sender.retries.values()) > 0, "no send was ever interrupted by a kill"
    # Whoever held the poll when it was last killed, a live runner holds it now.
    live = {r.processes["bridge"].pid for r in cluster.runners}
    wait_for(lambda: reconcile_holder(cluster.store_url) in live, timeout=15,
             what="a live runner to hold the reconcile poll")
    reader.close()


def holder_of_the_poll(cluster: Cluster) -> Deployment:
    holder = wait_for(lambda: reconcile_holder(cluster.store_url), timeout=15,
                      what="a runner to hold the reconcile poll")
    [runner] = [r for r in cluster.runners if r.processes["bridge"].pid == holder]
    return runner
