"""TwilioProvider end to end against the sandbox and small failing servers on loopback."""

from __future__ import annotations

import logging
import re
import threading
from datetime import UTC, datetime, timedelta

import anyio
import httpx
import pytest
from casebridge.errors import AmbiguousWriteError, PermanentError, TransientError
from casebridge.secrets import Secret
from casebridge_sms.provider import ProviderRefusal, TwilioProvider
from casebridge_sms.sandbox import SandboxState, create_sandbox_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

pytestmark = pytest.mark.anyio

TOKEN = "tok-s3cr3t-do-not-print"
SID = "AC" + "1" * 32
US = "+14155550100"
OTHER = "+14155550199"
FROM = "+15005550006"


def provider(url: str, **kwargs: object) -> TwilioProvider:
    return TwilioProvider(url, SID, Secret(TOKEN), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def state() -> SandboxState:
    return SandboxState(
        account_sid=SID,
        auth_token=Secret(TOKEN),
        callback_statuses=(),
        messaging_service_sid="MG" + "2" * 32,
    )


async def test_send_list_and_fetch(serve, state: SandboxState) -> None:
    with serve(create_sandbox_app(state)) as url:
        async with provider(url) as sms:
            sent = await sms.send(US, "Hello from casebridge", from_=FROM)
            assert re.fullmatch(r"SM[0-9a-f]{32}", sent.sid)
            assert (sent.to, sent.from_, sent.body, sent.status) == (
                US,
                FROM,
                "Hello from casebridge",
                "queued",
            )
            assert sent.num_segments == 1
            assert sent.date_created is not None
            assert sent.date_created.tzinfo is not None

            long = await sms.send(OTHER, "x" * 200, messaging_service_sid="MG" + "2" * 32)
            assert long.num_segments == 2
            assert long.messaging_service_sid == "MG" + "2" * 32
            # Twilio accepts a message for a messaging service and picks the sender later.
            assert (long.status, long.from_) == ("accepted", "")

            assert [m["sid"] for m in state.messages] == [sent.sid, long.sid]
            assert (await sms.get_message(sent.sid)).body == "Hello from casebridge"

            # Still queued, so no date_sent: the lookup finds it all the same.
            since = datetime.now(UTC) - timedelta(minutes=5)
            found = await sms.recent_messages(US, since)
            assert [m.sid for m in found] == [sent.sid] and found[0].date_sent is None
            assert [m.sid for m in await sms.recent_messages(US, since, from_=FROM)] == [sent.sid]
            assert await sms.recent_messages(US, since, from_="+15005550009") == []
            assert await sms.recent_messages(US, datetime.now(UTC) + timedelta(days=2)) == []


async def test_recent_messages_follows_pages(serve, state: SandboxState) -> None:
    with serve(create_sandbox_app(state)) as url:
        async with provider(url, page_size=2) as sms:
            sids = {(await sms.send(US, f"message {i}", from_=FROM)).sid for i in range(5)}
            await sms.send(OTHER, "not for US", from_=FROM)
            found = await sms.recent_messages(US, datetime.now(UTC) - timedelta(hours=1))
    assert {m.sid for m in found} == sids
    assert len(found) == 5


async def test_provider_errors_are_permanent_with_the_providers_message(
    serve, state: SandboxState, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with serve(create_sandbox_app(state)) as url:
        async with provider(url) as sms:
            with pytest.raises(PermanentError, match=r"21602.*Message body is required"):
                await sms.send(US, "", from_=FROM)
            with pytest.raises(PermanentError, match=r"21211.*Invalid 'To'"):
                await sms.send("not-a-number", "hi", from_=FROM)
            with pytest.raises(ProviderRefusal, match="21610") as opted_out:
                await sms.send("+15005550004", "hi", from_=FROM)
            with pytest.raises(PermanentError, match="20404"):
                await sms.get_message("SM" + "0" * 32)
        wrong = TwilioProvider(url, SID, Secret("wrong-token"))
        with pytest.raises(PermanentError, match=r"401.*Authenticate") as info:
            await wrong.send(US, "hi", from_=FROM)
        await wrong.aclose()
    assert "wrong-token" not in str(info.value)
    assert (opted_out.value.status, opted_out.value.code) == (400, 21610)
    assert (info.value.status, info.value.code) == (401, 20003)
    assert TOKEN not in caplog.text
    assert state.messages == []


async def test_each_call_is_one_attempt_and_hands_retry_after_to_the_outbox(
    serve, state: SandboxState, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The outbox owns retries: a call never waits, whatever the provider answers.
    async def no_sleep(delay: float) -> None:
        raise AssertionError(f"the provider slept {delay}s inside a call")

    monkeypatch.setattr(anyio, "sleep", no_sleep)
    state.fail_next(429, retry_after=120)
    state.fail_next(503)
    with serve(create_sandbox_app(state)) as url:
        async with provider(url) as sms:
            with pytest.raises(TransientError, match="429") as limited:
                await sms.send(US, "hi", from_=FROM)
            assert len(state.failures) == 1  # one request, not a loop
            with pytest.raises(TransientError, match="503") as unavailable:
                await sms.send(US, "hi", from_=FROM)
            sent = await sms.send(US, "third time lucky", from_=FROM)
    assert limited.value.retry_after == 120
    assert unavailable.value.retry_after is None
    for caught in (limited, unavailable):
        assert not isinstance(caught.value, AmbiguousWriteError)
        assert TOKEN not in str(caught.value)
    assert [m["sid"] for m in state.messages] == [sent.sid]


async def test_connection_refused_is_transient(closed_port: int) -> None:
    async with provider(f"http://127.0.0.1:{closed_port}") as sms:
        with pytest.raises(TransientError, match="cannot connect") as info:
            await sms.send(US, "hi", from_=FROM)
    assert not isinstance(info.value, AmbiguousWriteError)
    assert info.value.retry_after is None
    assert TOKEN not in str(info.value)


async def test_timeout_after_sending_is_ambiguous_for_writes_only(serve) -> None:
    release = threading.Event()
    hits: list[str] = []

    async def slow(request: Request) -> Response:
        hits.append(request.method)
        await anyio.to_thread.run_sync(release.wait, 10)
        return JSONResponse({"messages": []})

    path = f"/2010-04-01/Accounts/{SID}/Messages.json"
    app = Starlette(routes=[Route(path, slow, methods=["GET", "POST"])])
    try:
        with serve(app) as url:
            async with provider(url, timeout=0.3) as sms:
                with pytest.raises(AmbiguousWriteError, match="may have been sent"):
                    await sms.send(US, "hi", from_=FROM)
                assert hits == ["POST"]
                with pytest.raises(TransientError) as info:
                    await sms.recent_messages(US, datetime.now(UTC))
                assert not isinstance(info.value, AmbiguousWriteError)
                assert hits == ["POST", "GET"]
            release.set()
    finally:
        release.set()


async def test_status_callbacks_are_posted_and_signed(serve, state: SandboxState) -> None:
    from casebridge_sms.signature import verify_signature

    state.callback_statuses = ("sent", "delivered")
    received: list[tuple[dict[str, str], bool]] = []
    callback_url = ""

    async def callback(request: Request) -> Response:
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        signature = request.headers.get("X-Twilio-Signature", "")
        received.append((form, verify_signature(TOKEN, callback_url, form, signature)))
        return Response(status_code=204)

    receiver = Starlette(routes=[Route("/status", callback, methods=["POST"])])
    with serve(receiver) as receiver_url, serve(create_sandbox_app(state)) as url:
        callback_url = f"{receiver_url}/status?tenant=t1"
        async with provider(url) as sms:
            sent = await sms.send(US, "track me", from_=FROM, status_callback=callback_url)
            # The sandbox records callbacks from its own thread: poll, bounded.
            with anyio.fail_after(10):
                while len(state.callbacks) < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            assert (await sms.get_message(sent.sid)).status == "delivered"
    assert [form["MessageStatus"] for form, _ in received] == ["sent", "delivered"]
    assert all(ok for _, ok in received)
    assert all(form["MessageSid"] == sent.sid for form, _ in received)
    assert [c["http_status"] for c in state.callbacks] == [204, 204]


def test_repr_and_errors_hide_the_token() -> None:
    sms = TwilioProvider("https://api.example.test", SID, Secret(TOKEN))
    assert TOKEN not in repr(sms)
    with pytest.raises(ValueError, match="Secret"):
        TwilioProvider("https://api.example.test", SID, TOKEN)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exactly one"):
        anyio.run(lambda: sms.send(US, "hi"))


async def test_sandbox_refuses_requests_without_credentials(serve, state: SandboxState) -> None:
    with serve(create_sandbox_app(state)) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            path = f"/2010-04-01/Accounts/{SID}/Messages.json"
            bare = await client.post(path, data={"To": US, "From": FROM, "Body": "x"})
            wrong = await client.get(path, auth=(SID, "nope"))
            other = await client.get(path.replace(SID, "AC" + "9" * 32), auth=(SID, TOKEN))
    assert bare.status_code == 401
    assert bare.json()["code"] == 20003
    assert wrong.status_code == 401
    assert other.status_code == 404
    assert state.messages == []
