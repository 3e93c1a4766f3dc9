"""Several `casebridge run` processes on one PostgreSQL, as production runs them: each with
its own SMTP and HTTP port, all sharing one data folder (blobs, the link key) and one
Creatio (the sandbox as its own process). The customers' side spreads its messages over the
runners as a TCP load balancer would, moving to the next runner when one does not answer.

Each runner is a :class:`~deployment.Deployment` whose bridge is the only process it
starts; the :class:`Cluster` starts the shared Creatio sandbox and mail sink itself.
"""

from __future__ import annotations

import smtplib
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deployment import Deployment, Sink, free_port, wait_for
from load import Conversation, TemporaryFailure, mail


@dataclass
class Cluster:
    """``count`` runners on the PostgreSQL at ``store_url``; see the module docstring."""

    root: Path
    store_url: str
    count: int
    overrides: dict[str, Any] = field(default_factory=dict)
    creatio_port: int = field(default_factory=free_port)
    sink_port: int = field(default_factory=free_port)
    runners: list[Deployment] = field(default_factory=list)
    hub: Deployment | None = None

    def __post_init__(self) -> None:
        shared = self.root / "shared"
        self.hub = Deployment(self.root / "hub", creatio_port=self.creatio_port,
                              sink_port=self.sink_port)
        for n in range(self.count):
            overrides: dict[str, Any] = {
                **self.overrides,
                "bridge": {"channels": ["email"], "data_dir": str(shared),
                           **self.overrides.get("bridge", {})},
                "store": {"url": self.store_url},
            }
            self.runners.append(Deployment(self.root / f"runner-{n}", overrides=overrides,
                                           creatio_port=self.creatio_port,
                                           sink_port=self.sink_port))

    @property
    def first(self) -> Deployment:
        """Any runner answers for the whole cluster (``casebridge outbox list``, Creatio)."""
        return self.runners[0]

    def start(self) -> Cluster:
        hub = self.hub
        assert hub is not None
        hub.root.mkdir(parents=True, exist_ok=True)
        hub.sink = Sink(self.sink_port)
        hub.sink.controller.start()
        # No webhook: nothing in these tests waits for a rep's reply, and a business process
        # can name only one address (a load balancer's, in production).
        hub._spawn("creatio", "sandbox", "creatio", "--port", str(self.creatio_port),
                   "--db", str(hub.root / "creatio.sqlite"))
        wait_for(lambda: hub._answers(hub.creatio_url + "/sandbox/cases"), what="Creatio")
        for runner in self.runners:
            runner.root.mkdir(parents=True, exist_ok=True)
        # Started side by side: they migrate and take the singletons' locks at the same time.
        with ThreadPoolExecutor(self.count) as pool:
            for done in [pool.submit(r.start_bridge) for r in self.runners]:
                done.result()
        return self

    def stop(self) -> None:
        for runner in self.runners:
            runner.stop()
        if self.hub is not None:
            self.hub.stop()


@dataclass
class SpreadSender:
    """Sends each message to a runner (conversation ``n``'s note ``i`` to runner ``n + i``,
    so a follow-up usually reaches another runner than its first message) and, when that
    runner refuses or drops the connection, to the next one, until one answers 250."""

    cluster: Cluster
    deadline: float = 120.0
    retries: Counter[str] = field(default_factory=Counter)
    accepted_by: Counter[int] = field(default_factory=Counter)

    def send_all(self, number: int, conversation: Conversation) -> None:
        for index in range(len(conversation.notes)):
            self.send(number + index, conversation, index)

    def send(self, start: int, conversation: Conversation, index: int) -> None:
        data = mail(conversation, index)
        give_up = time.monotonic() + self.deadline
        runners = self.cluster.runners
        attempt = 0
        while True:
            which = (start + attempt) % len(runners)
            try:
                with smtplib.SMTP("127.0.0.1", runners[which].smtp_port, timeout=30) as smtp:
                    try:
                        smtp.send_message(data)
                    except smtplib.SMTPResponseException as exc:
                        if 400 <= exc.smtp_code < 500:
                            raise TemporaryFailure(f"SMTP {exc.smtp_code}") from exc
                        raise
                self.accepted_by[which] += 1
                return
            except (OSError, smtplib.SMTPServerDisconnected, TemporaryFailure) as exc:
                if isinstance(exc, smtplib.SMTPResponseException):
                    raise  # a 5xx refusal: no runner would take it
                self.retries[type(exc).__name__] += 1
                if time.monotonic() > give_up:
                    raise AssertionError(f"not accepted by any runner: {exc}") from exc
                attempt += 1
                if attempt % len(runners) == 0:
                    time.sleep(0.2)  # every runner refused: wait for a restart

