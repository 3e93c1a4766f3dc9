"""Creatio misbehaving under load, through real processes on loopback: a burst of handoffs
while the sandbox answers 5xx, 429 with Retry-After, expired sessions, dropped connections
and failures after a committed write; and Creatio gone for a while, then back. Every
message must end up as exactly one activity, every handoff as exactly one case, in order."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from deployment import Deployment
from load import (
    CrmReader,
    Sender,
    conversations,
    fault_stats,
    problems,
    set_faults,
    wait_until_written,
)

pytestmark = pytest.mark.slow

# Retries quick enough for the burst to drain within the test, with a budget no job of a
# healthy bridge exhausts at these fault rates.
OVERRIDES = {
    "outbox": {"workers": 8, "max_attempts": 30, "backoff_base": 0.2, "backoff_cap": 2.0,
               "poll_seconds": 0.1},
    "plugins": {"creatio": {"timeout": 10.0, "max_retry_wait": 5.0}},
}
FAULTS = {"error_rate": 0.05, "throttle_rate": 0.01, "retry_after_s": 1, "expire_rate": 0.05,
          "drop_rate": 0.05, "fail_after_write_rate": 0.05, "seed": 8}
BURST = 500


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    running = Deployment(tmp_path / "deployment", overrides=OVERRIDES).start()
    try:
        yield running
    finally:
        running.stop()


def test_a_burst_of_500_handoffs_through_creatio_faults(deployment: Deployment) -> None:
    load = conversations("burst", BURST, sms_every=5, follow_up_every=3)
    reader = CrmReader(deployment)
    before = reader.snapshot()
    set_faults(deployment, **FAULTS)
    sender = Sender(deployment)
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(sender.send_all, load))
    sent = time.monotonic()

    wait_until_written(deployment, reader, load, timeout=150)
    print(f"{BURST} conversations sent in {sent - started:.1f}s, all written "
          f"{time.monotonic() - sent:.1f}s later; {fault_stats(deployment)}")
    set_faults(deployment, **dict.fromkeys(
        ("error_rate", "throttle_rate", "expire_rate", "drop_rate", "fail_after_write_rate"),
        0.0))
    injected = fault_stats(deployment)["faults_injected"]
    assert all(injected.get(kind) for kind in ("5xx", "429", "expire", "drop")), injected
    assert problems(load, before, reader.snapshot()) == []
    reader.close()


def test_creatio_down_for_a_while_then_back(deployment: Deployment) -> None:
    load = conversations("outage", 60, sms_every=4, follow_up_every=2)
    reader = CrmReader(deployment)
    before = reader.snapshot()
    sender = Sender(deployment)
    # Creatio refuses everything: half its answers are 5xx, the other half drop the line.
    set_faults(deployment, error_rate=1.0, drop_rate=0.5, seed=3)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(sender.send_all, load))
    requests_while_down = fault_stats(deployment)["requests"]
    # The bridge keeps trying (and keeps every message) while Creatio is down.
    deadline = time.monotonic() + 30
    while fault_stats(deployment)["requests"] < requests_while_down + 20:
        assert time.monotonic() < deadline, "the bridge stopped trying to reach Creatio"
        time.sleep(0.2)
    set_faults(deployment, error_rate=0.0, drop_rate=0.0)

    wait_until_written(deployment, reader, load, timeout=90)
    assert problems(load, before, reader.snapshot()) == []
    reader.close()
