"""kill -9 of `casebridge run` at random moments under load, and SMTP clients whose
connection drops: whatever a customer's server got a 250 for (or sent again until it did)
is exactly one activity on exactly one case, nothing lost, nothing twice."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from email import policy
from io import BufferedReader

import pytest
from deployment import SUPPORT, Deployment
from load import CrmReader, Sender, conversations, mail, problems, wait_until_written

pytestmark = pytest.mark.slow

# A short lease so the jobs a killed runner held are taken up again soon after the restart;
# a budget no job spends only because its runner was killed under it a few times.
OVERRIDES = {
    "outbox": {"workers": 4, "max_attempts": 40, "backoff_base": 0.1, "backoff_cap": 1.0,
               "lease_seconds": 1.5, "poll_seconds": 0.1},
}
KILLS = 20
PER_ROUND = 10


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    running = Deployment(tmp_path_factory.mktemp("kill9"), overrides=OVERRIDES).start()
    try:
        yield running
    finally:
        running.stop()


def test_kill9_at_random_moments_loses_and_duplicates_nothing(deployment: Deployment) -> None:
    load = conversations("kill", KILLS * PER_ROUND, sms_every=4, follow_up_every=3)
    reader = CrmReader(deployment)
    before = reader.snapshot()
    sender = Sender(deployment)
    rng = random.Random(20)
    with ThreadPoolExecutor(8) as pool:
        futures = []
        for round_ in range(KILLS):
            batch = load[round_ * PER_ROUND:(round_ + 1) * PER_ROUND]
            futures += [pool.submit(sender.send_all, c) for c in batch]
            # Somewhere in ingest, threading, handoff or the Creatio writes of this batch
            # (and the retries of earlier ones).
            time.sleep(rng.uniform(0.0, 0.6))
            deployment.stop_bridge(kill=True)
            deployment.start_bridge()
        wait(futures)
        for future in futures:
            future.result()

    wait_until_written(deployment, reader, load, timeout=90)
    print(f"{KILLS} kills; senders resent after {dict(sender.retries)}")
    assert problems(load, before, reader.snapshot()) == []
    # The kills did cut senders off: the resends above are what the test is about.
    assert sum(sender.retries.values()) > 0, "no send was ever interrupted by a kill"
    reader.close()


def smtp_reply(stream: BufferedReader) -> str:
    """One (possibly multi-line) SMTP reply from a socket's binary file."""
    lines = []
    while True:
        line = stream.readline()
        assert line, "the server closed the connection"
        lines.append(line.decode())
        if line[3:4] != b"-":
            return "".join(lines)


def cut_session(port: int, data: bytes, mail_from: str, cut: str) -> str:
    """An SMTP session that ends without QUIT: ``cut`` is "mid-data" (half the message
    sent), "after-dot" (all of it, closed before the reply) or "before-quit" (the reply
    read, then closed). Returns the last reply read."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        stream = sock.makefile("rb")
        last = smtp_reply(stream)
        for command in (b"EHLO customer.example", f"MAIL FROM:<{mail_from}>".encode(),
                        f"RCPT TO:<{SUPPORT}>".encode(), b"DATA"):
            sock.sendall(command + b"\r\n")
            last = smtp_reply(stream)
        assert last.startswith("354"), last
        if cut == "mid-data":
            sock.sendall(data[: len(data) // 2])
            return last
        sock.sendall(data + b"\r\n.\r\n")
        if cut == "after-dot":
            return last
        return smtp_reply(stream)


@pytest.mark.parametrize("cut", ["mid-data", "after-dot", "before-quit"])
def test_smtp_client_resending_after_a_dropped_connection_makes_one_activity(
    deployment: Deployment, cut: str
) -> None:
    load = conversations(f"cut-{cut}", 2, follow_up_every=2)
    reader = CrmReader(deployment)
    before = reader.snapshot()
    for conversation in load:
        for index in range(len(conversation.notes)):
            data = mail(conversation, index).as_bytes(policy=policy.SMTP)
            last = cut_session(deployment.smtp_port, data, conversation.address, cut)
            if cut == "before-quit":
                assert last.startswith("250"), last
            # The client never saw its QUIT answered (or never saw the 250): it sends the
            # very same message again.
            Sender(deployment).send(conversation, index)
    wait_until_written(deployment, reader, load, timeout=30)
    assert problems(load, before, reader.snapshot()) == []
    reader.close()
