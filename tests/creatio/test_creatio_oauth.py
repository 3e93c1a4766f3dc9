"""OAuth renewal: a token is renewed at 80 % of its life (with a floor), and however many
requests wait, one token is fetched at a time."""

from __future__ import annotations

import anyio
import httpx
import pytest
from casebridge.secrets import Secret
from casebridge_creatio.auth import renew_after
from casebridge_creatio.client import CreatioClient
from casebridge_creatio.settings import CreatioSettings
from fake_creatio import BASE, CLIENT_ID, CLIENT_SECRET, IDENTITY, FakeCreatio
from hypothesis import given
from hypothesis import strategies as st

pytestmark = pytest.mark.anyio


def oauth_settings(**overrides) -> CreatioSettings:
    values = dict(
        url=BASE,
        auth="oauth",
        identity_url=IDENTITY,
        client_id=CLIENT_ID,
        client_secret=Secret(CLIENT_SECRET),
        max_concurrency=64,
    )
    values.update(overrides)
    return CreatioSettings(**values)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def slow_token_transport(fake: FakeCreatio, delay: float) -> httpx.AsyncBaseTransport:
    """The fake Creatio, with a token endpoint that takes ``delay`` seconds to answer."""

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/connect/token":
            await anyio.sleep(delay)
        return fake.handle(request)

    return httpx.MockTransport(handle)


async def test_a_60_second_token_is_not_fetched_before_every_request() -> None:
    fake = FakeCreatio(mode="oauth", token_lifetime=60)
    clock = Clock()
    async with CreatioClient(oauth_settings(), transport=fake.transport(), clock=clock) as client:
        for _ in range(47):
            await client.query("Case")
            clock.now += 1
        assert fake.token_requests == 1  # 47 s: before 80 % of 60 s
        clock.now += 2  # 49 s: past 48 s
        await client.query("Case")
        assert fake.token_requests == 2
        for _ in range(10):
            await client.query("Case")
        assert fake.token_requests == 2


async def test_a_token_living_two_seconds_is_used_until_nearly_expired() -> None:
    fake = FakeCreatio(mode="oauth", token_lifetime=2)
    clock = Clock()
    async with CreatioClient(oauth_settings(), transport=fake.transport(), clock=clock) as client:
        for _ in range(18):
            await client.query("Case")
            clock.now += 0.1
        # The floor keeps it beyond 80 % (1.6 s): up to 95 % of its life (1.9 s).
        assert fake.token_requests == 1
        clock.now += 0.2  # 2.0 s
        await client.query("Case")
        assert fake.token_requests == 2


async def test_waiting_requests_share_one_fetch_when_there_is_no_token() -> None:
    fake = FakeCreatio(mode="oauth", token_lifetime=60)
    client = CreatioClient(oauth_settings(), transport=slow_token_transport(fake, 0.05))
    async with client, anyio.create_task_group() as tg:
        for _ in range(30):
            tg.start_soon(client.query, "Case")
    assert fake.token_requests == 1
    assert len(fake.requests_to("GET", "/odata/Case")) == 30


async def test_renewal_is_one_fetch_while_the_others_use_the_current_token() -> None:
    fake = FakeCreatio(mode="oauth", token_lifetime=60)
    clock = Clock()
    async with CreatioClient(
        oauth_settings(), transport=slow_token_transport(fake, 0.2), clock=clock
    ) as client:
        await client.query("Case")
        clock.now += 50  # past the renewal point, still far from expiry
        started = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for _ in range(30):
                tg.start_soon(client.query, "Case")
        assert fake.token_requests == 2
        # 29 requests did not wait for the slow token endpoint.
        sent = fake.requests_to("GET", "/odata/Case")[1:]
        old = [r for r in sent if r.headers["Authorization"] == "Bearer tok1"]
        assert len(old) == 29
        assert anyio.current_time() - started >= 0.2
        await client.query("Case")
        assert fake.requests_to("GET", "/odata/Case")[-1].headers["Authorization"] == "Bearer tok2"


async def test_an_expired_token_makes_every_request_wait_for_the_one_fetch() -> None:
    fake = FakeCreatio(mode="oauth", token_lifetime=60)
    clock = Clock()
    async with CreatioClient(
        oauth_settings(), transport=slow_token_transport(fake, 0.05), clock=clock
    ) as client:
        await client.query("Case")
        clock.now += 59  # past 95 %: not sent any more
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(client.query, "Case")
    assert fake.token_requests == 2
    sent = fake.requests_to("GET", "/odata/Case")[1:]
    assert all(r.headers["Authorization"] == "Bearer tok2" for r in sent)


@given(st.floats(min_value=0, max_value=10**7, allow_nan=False))
def test_renew_after_is_a_share_of_the_lifetime_with_a_floor(lifetime: float) -> None:
    after = renew_after(lifetime)
    assert lifetime * 0.8 <= after <= max(lifetime * 0.8, lifetime * 0.95)
    assert after >= min(5.0, lifetime * 0.95)
    assert renew_after(lifetime + 1) >= after
