"""A 429 or 503 with Retry-After slows every worker of the client, not only the one that got
it (that one's attempt ends: the outbox retries it); the concurrency cap holds meanwhile."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest
from casebridge.errors import TransientError
from casebridge.secrets import Secret
from casebridge_creatio.client import CreatioClient
from casebridge_creatio.settings import CreatioSettings
from fake_creatio import BASE, PASSWORD, USER, FakeCreatio

pytestmark = pytest.mark.anyio


def settings(**overrides) -> CreatioSettings:
    values = dict(
        url=BASE,
        username=USER,
        password=Secret(PASSWORD),
        max_concurrency=4,
    )
    values.update(overrides)
    return CreatioSettings(**values)


class Throttling:
    """The fake Creatio answering the first ``times`` case queries with ``status`` and a
    Retry-After; records when each query reached it."""

    def __init__(self, status: int, retry_after: str, times: int = 1) -> None:
        self.fake = FakeCreatio()
        self.status, self.retry_after, self.left = status, retry_after, times
        self.arrivals: list[tuple[float, str]] = []
        self.refused = anyio.Event()

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if "/odata/" not in request.url.path:
            return self.fake.handle(request)
        who = request.url.params.get("$filter", "")
        self.arrivals.append((anyio.current_time(), who))
        if self.left > 0:
            self.left -= 1
            self.refused.set()
            return httpx.Response(self.status, headers={"Retry-After": self.retry_after})
        return self.fake.handle(request)


async def quietly(call: Callable[[], Awaitable[Any]]) -> None:
    """Run one worker's request; its TransientError is the outbox's to retry."""
    with contextlib.suppress(TransientError):
        await call()


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_holds_back_the_other_workers(status: int) -> None:
    server = Throttling(status, "1")
    client = CreatioClient(settings(), transport=httpx.MockTransport(server.handle))
    async with client, anyio.create_task_group() as tg:
        tg.start_soon(quietly, lambda: client.query("Case", filter=None, top=1))
        await server.refused.wait()
        refused_at = anyio.current_time()
        for n in range(3):
            tg.start_soon(lambda n=n: client.query("Case", top=2 + n))
    later = [at for at, _ in server.arrivals[1:]]
    # The refused worker's attempt ended (no retry inside the client) ...
    assert len(later) == 3
    # ... and none of the three that came after went out before 1 s.
    assert min(later) - refused_at >= 0.9


async def test_a_retry_after_beyond_max_retry_wait_sends_the_others_to_the_outbox() -> None:
    server = Throttling(429, "120")
    client = CreatioClient(
        settings(max_retry_wait=60), transport=httpx.MockTransport(server.handle)
    )
    async with client:
        with pytest.raises(TransientError):
            await client.query("Case")
        with pytest.raises(TransientError) as info:
            await client.query("Contact")
    assert 100 < (info.value.retry_after or 0) <= 120
    assert len(server.arrivals) == 1  # the second query was not sent


async def test_without_retry_after_other_workers_are_not_held_back() -> None:
    server = Throttling(503, "", times=1)
    client = CreatioClient(settings(), transport=httpx.MockTransport(server.handle))
    async with client, anyio.create_task_group() as tg:
        tg.start_soon(quietly, lambda: client.query("Case"))
        await server.refused.wait()
        refused_at = anyio.current_time()
        tg.start_soon(client.query, "Contact")
    assert server.arrivals[1][0] - refused_at < 0.5
