"""CreatioClient against the in-memory Creatio: auth, one attempt per request (the outbox
retries), the Retry-After gate, errors, batch, secrets."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime as http_date

import anyio
import httpx
import pytest
from casebridge.errors import AmbiguousWriteError, PermanentError, TransientError
from casebridge.secrets import Secret
from casebridge_creatio.auth import CreatioAuthError
from casebridge_creatio.client import (
    BatchRequest,
    CreatioClient,
    CreatioError,
    CreatioHtmlError,
    error_message,
)
from casebridge_creatio.odata import eq
from casebridge_creatio.settings import CreatioSettings
from fake_creatio import (
    BASE,
    CLIENT_ID,
    CLIENT_SECRET,
    IDENTITY,
    PASSWORD,
    USER,
    FakeCreatio,
    Fault,
)

pytestmark = pytest.mark.anyio


def login_settings(**overrides) -> CreatioSettings:
    values = dict(url=BASE + "/", username=USER, password=Secret(PASSWORD))
    values.update(overrides)
    return CreatioSettings(**values)


def oauth_settings(**overrides) -> CreatioSettings:
    values = dict(
        url=BASE,
        auth="oauth",
        identity_url=IDENTITY,
        client_id=CLIENT_ID,
        client_secret=Secret(CLIENT_SECRET),
    )
    values.update(overrides)
    return CreatioSettings(**values)


class Clock:
    """A fake monotonic clock whose sleep only moves time forward."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_client(fake: FakeCreatio, settings: CreatioSettings, clock: Clock | None = None):
    clock = clock or Clock()
    return CreatioClient(
        settings, transport=fake.transport(), sleep=clock.sleep, clock=clock
    )


def to(method: str, part: str):
    return lambda r: r.method == method and part in r.url.path


def case_body(**extra) -> dict:
    return {"Id": str(uuid.uuid4()), "Subject": "Printer on fire", **extra}


# -- sign-in ---------------------------------------------------------------------------------


async def test_login_sends_cookies_csrf_and_force_use_session():
    fake = FakeCreatio()
    async with make_client(fake, login_settings()) as client:
        created = await client.create("Case", case_body())
        assert created["Number"].startswith("SR")
        assert await client.get("Case", created["Id"]) is not None
    assert fake.logins == 1
    sent = fake.requests_to("GET", "/0/odata/Case(")[0]
    assert sent.headers["BPMCSRF"] == "csrfsess1"
    assert "BPMLOADER=loader" in sent.headers["Cookie"]


async def test_login_refused_with_code_on_http_200_names_creatio_message():
    fake = FakeCreatio()
    settings = login_settings(password=Secret("wrong-password-xyz"))
    async with make_client(fake, settings) as client:
        with pytest.raises(CreatioAuthError, match="Invalid login or password") as info:
            await client.query("Case")
    assert "wrong-password-xyz" not in str(info.value)
    assert isinstance(info.value, PermanentError)


async def test_expired_session_signs_in_again_once_and_retries():
    fake = FakeCreatio()
    async with make_client(fake, login_settings()) as client:
        await client.query("Case")
        fake.expire_sessions()
        assert await client.query("Case") == []
    assert fake.logins == 2


async def test_throttled_sign_in_after_401_is_left_to_the_next_attempt():
    fake = FakeCreatio()
    clock = Clock()
    async with make_client(fake, login_settings(), clock) as client:
        await client.query("Case")
        fake.expire_sessions()
        busy = httpx.Response(429, headers={"Retry-After": "3"})
        fake.faults.append(Fault(to("POST", "AuthService.svc/Login"), busy))
        with pytest.raises(TransientError) as info:
            await client.query("Case")
        assert info.value.retry_after == 3
        # The outbox's next attempt waits out the throttle (every request does), then signs
        # in afresh.
        assert await client.query("Case") == []
    assert clock.sleeps == [3]
    assert len(fake.requests_to("POST", "AuthService.svc/Login")) == 3


async def test_401_after_every_fresh_login_is_left_to_a_later_attempt():
    # The logins themselves worked (refused credentials fail at login, for good): a session
    # that ends as it starts is retried by the outbox later, never a lost job.
    fake = FakeCreatio()
    fake.faults.append(Fault(to("GET", "/odata/Case"), httpx.Response(401), times=9))
    async with make_client(fake, login_settings(), Clock()) as client:
        with pytest.raises(TransientError, match="right after signing in again") as info:
            await client.query("Case")
    assert not isinstance(info.value, CreatioAuthError)
    # The first sign-in and one more for the 401: one attempt, however the second ends.
    assert fake.logins == 2
    assert len(fake.requests_to("GET", "/odata/Case")) == 2


@pytest.mark.parametrize("method", ["query", "create"])
async def test_a_session_expiring_again_right_after_a_login_is_the_next_attempts(method):
    # Seen against the sandbox's expired-session faults under load: two 401s in a row are
    # an unlucky session, not refused credentials, and must not kill the job: transient,
    # and the outbox's next attempt goes through.
    fake = FakeCreatio()
    verb, path = ("GET", "/odata/Case") if method == "query" else ("POST", "/odata/Contact")
    fake.faults.append(Fault(to(verb, path), httpx.Response(401), times=2))
    record = {"Id": str(uuid.uuid4()), "Name": "Ann"}
    clock = Clock()
    async with make_client(fake, login_settings(), clock) as client:
        call = (lambda: client.query("Case")) if method == "query" else (
            lambda: client.create("Contact", record))
        with pytest.raises(TransientError) as info:
            await call()
        assert not isinstance(info.value, AmbiguousWriteError)
        assert fake.tables.get("Contact", {}) == {}
        await call()
    if method == "create":
        assert list(fake.tables["Contact"]) == [record["Id"]]
    assert fake.logins == 2
    assert clock.sleeps == []


async def test_concurrent_401s_share_one_new_login():
    fake = FakeCreatio()
    async with make_client(fake, login_settings()) as client:
        await client.query("Case")
        fake.expire_sessions()
        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(client.query, "Case")
    assert fake.logins == 2


async def test_oauth_token_is_cached_and_renewed_before_expiry():
    fake = FakeCreatio(mode="oauth", token_lifetime=3600)
    clock = Clock()
    async with make_client(fake, oauth_settings(), clock) as client:
        await client.query("Case")
        clock.now += 2800
        await client.query("Case")
        assert fake.token_requests == 1
        clock.now += 100  # 2900 s: past 80 % of the lifetime
        await client.query("Case")
        assert fake.token_requests == 2
    sent = fake.requests_to("GET", "/odata/Case")[-1]
    assert sent.headers["Authorization"] == "Bearer tok2"
    assert "BPMCSRF" not in sent.headers


async def test_oauth_concurrent_first_calls_fetch_one_token_and_401_renews():
    fake = FakeCreatio(mode="oauth")
    async with make_client(fake, oauth_settings()) as client:
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(client.query, "Case")
        assert fake.token_requests == 1
        fake.expire_sessions()
        await client.query("Case")
    assert fake.token_requests == 2


async def test_oauth_refused_names_the_error_not_the_secret():
    fake = FakeCreatio(mode="oauth")
    settings = oauth_settings(client_secret=Secret("not-the-right-secret"))
    async with make_client(fake, settings) as client:
        with pytest.raises(CreatioAuthError, match="invalid_client") as info:
            await client.query("Case")
    assert "not-the-right-secret" not in str(info.value)


# -- answers and errors ----------------------------------------------------------------------


async def test_html_answer_says_wrong_url_or_odata_permission():
    fake = FakeCreatio()
    page = httpx.Response(200, html="<!DOCTYPE html><html><body>Login</body></html>")
    fake.faults.append(Fault(to("GET", "/odata/Case"), page))
    async with make_client(fake, login_settings()) as client:
        with pytest.raises(CreatioHtmlError, match="CanUseODataService") as info:
            await client.query("Case")
    assert "wrong url" in str(info.value)


async def test_error_json_becomes_creatio_error_with_innermost_message():
    fake = FakeCreatio()
    async with make_client(fake, login_settings()) as client:
        with pytest.raises(CreatioError) as info:
            await client.create("Activity", {"Title": ""})
        with pytest.raises(CreatioError) as missing:
            await client.update("Case", str(uuid.uuid4()), {"Subject": "x"})
    error = info.value
    assert (error.entity, error.operation, error.status) == ("Activity", "create", 400)
    assert str(error) == "Creatio refused to create Activity (HTTP 400): Column 'Title' is required"
    assert missing.value.status == 404


def test_error_message_picks_the_innermost_message():
    body = {
        "error": {
            "message": "An error occurred",
            "innererror": {
                "message": "An error occurred",
                "internalexception": {"message": "Column 'Foo' not found"},
            },
        }
    }
    assert error_message(body) == "Column 'Foo' not found"
    assert error_message({"Message": "Service fault"}) == "Service fault"
    assert error_message(["odd"]) == ""


async def test_get_missing_is_none_and_delete_missing_is_done():
    fake = FakeCreatio()
    async with make_client(fake, login_settings()) as client:
        assert await client.get("Case", str(uuid.uuid4())) is None
        await client.delete("Case", str(uuid.uuid4()))
        with pytest.raises(ValueError, match="GUID"):
            await client.get("Case", "1 or 1 eq 1")


# -- retries ---------------------------------------------------------------------------------


async def test_retry_after_seconds_and_http_date_close_the_gate_for_the_next_requests():
    fake = FakeCreatio()
    later = http_date(datetime.now(UTC) + timedelta(seconds=40), usegmt=True)
    fake.faults += [
        Fault(to("GET", "/odata/Case"), httpx.Response(429, headers={"Retry-After": "7"})),
        Fault(to("GET", "/odata/Case"), httpx.Response(503, headers={"Retry-After": later})),
    ]
    clock = Clock()
    async with make_client(fake, login_settings(), clock) as client:
        with pytest.raises(TransientError) as first:
            await client.query("Case")
        assert first.value.retry_after == 7 and clock.sleeps == []
        # The next request waits out the 7 s (within max_retry_wait), then gets the 503.
        with pytest.raises(TransientError) as second:
            await client.query("Case")
        assert clock.sleeps == [7]
        assert 35 < (second.value.retry_after or 0) <= 40
        # 40 s is longer than max_retry_wait: handed to the outbox without being sent.
        with pytest.raises(TransientError, match="asked to wait"):
            await client.query("Case")
        assert len(fake.requests_to("GET", "/odata/Case")) == 2
        clock.now += 41
        assert await client.query("Case") == []
    assert clock.sleeps == [7]


async def test_long_retry_after_goes_to_the_outbox_at_once():
    fake = FakeCreatio()
    fake.faults.append(
        Fault(to("GET", "/odata/Case"), httpx.Response(429, headers={"Retry-After": "3600"}))
    )
    clock = Clock()
    async with make_client(fake, login_settings(), clock) as client:
        with pytest.raises(TransientError) as info:
            await client.query("Case")
    assert info.value.retry_after == 3600
    assert clock.sleeps == []


async def test_a_5xx_is_one_attempt_left_to_the_outbox():
    fake = FakeCreatio()
    fake.faults.append(
        Fault(
            to("GET", "/odata/Case"),
            httpx.Response(500, json={"error": {"message": "boom"}}),
            times=99,
        )
    )
    clock = Clock()
    async with make_client(fake, login_settings(), clock) as client:
        with pytest.raises(TransientError, match="boom") as info:
            await client.query("Case")
    assert not isinstance(info.value, PermanentError)
    assert clock.sleeps == []
    assert len(fake.requests_to("GET", "/odata/Case")) == 1


async def test_a_refused_connection_is_transient_even_for_a_post_and_writes_nothing():
    fake = FakeCreatio()
    fake.faults.append(Fault(to("POST", "/odata/Contact"), httpx.ConnectError("refused")))
    async with make_client(fake, login_settings()) as client:
        with pytest.raises(TransientError) as info:
            await client.create("Contact", {"Name": "Ann"})
        assert not isinstance(info.value, AmbiguousWriteError)
        assert len(fake.tables.get("Contact", {})) == 0
        created = await client.create("Contact", {"Name": "Ann"})
    assert len(fake.tables["Contact"]) == 1
    assert created["Name"] == "Ann"


async def test_timeout_after_a_write_without_id_is_ambiguous_and_not_repeated():
    fake = FakeCreatio()
    fake.faults.append(
        Fault(to("POST", "/odata/Contact"), after=httpx.ReadTimeout("read timed out"))
    )
    async with make_client(fake, login_settings()) as client:
        with pytest.raises(AmbiguousWriteError):
            await client.create("Contact", {"Name": "Ann"})
    assert len(fake.requests_to("POST", "/odata/Contact")) == 1
    assert len(fake.tables["Contact"]) == 1


async def test_timeout_after_a_batch_is_ambiguous():
    fake = FakeCreatio()
    fake.faults.append(Fault(to("POST", "$batch"), after=httpx.RemoteProtocolError("dropped")))
    async with make_client(fake, login_settings()) as client:
        with pytest.raises(AmbiguousWriteError):
            await client.batch([BatchRequest("POST", "Case", case_body())])
    assert len(fake.requests_to("POST", "$batch")) == 1


async def test_lost_answer_to_a_write_with_id_reads_it_back_instead_of_writing_twice():
    fake = FakeCreatio()
    fake.faults.append(Fault(to("POST", "/odata/Case"), after=httpx.ReadTimeout("timed out")))
    body = case_body()
    async with make_client(fake, login_settings()) as client:
        created = await client.create("Case", body)
    assert created["Id"] == body["Id"] and created["Number"]
    assert len(fake.tables["Case"]) == 1
    assert len(fake.requests_to("POST", "/odata/Case")) == 1


async def test_retried_write_with_id_that_hits_duplicate_key_returns_the_record():
    fake = FakeCreatio()
    body = case_body()
    async with make_client(fake, login_settings()) as client:
        first = await client.create("Case", body)
        again = await client.create("Case", body)
    assert again == first
    assert len(fake.tables["Case"]) == 1


async def test_concurrency_cap_is_respected():
    fake = FakeCreatio()
    active = peak = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await anyio.sleep(0.01)
        active -= 1
        return fake.handle(request)

    settings = login_settings(max_concurrency=3)
    client = CreatioClient(settings, transport=httpx.MockTransport(slow))
    async with client, anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(client.query, "Case")
    assert peak == 3


# -- batch -----------------------------------------------------------------------------------


async def test_batch_is_split_at_100_and_keeps_order():
    fake = FakeCreatio()
    requests = [BatchRequest("POST", "Contact", {"Name": f"c{i}"}, id=f"r{i}") for i in range(250)]
    async with make_client(fake, login_settings()) as client:
        answers = await client.batch(requests)
    batches = fake.requests_to("POST", "$batch")
    assert [len(json.loads(b.content)["requests"]) for b in batches] == [100, 100, 50]
    assert [a.id for a in answers] == [f"r{i}" for i in range(250)]
    assert all(a.status == 201 for a in answers)
    assert len(fake.tables["Contact"]) == 250


async def test_batch_stops_at_first_failure_unless_continue_on_error():
    fake = FakeCreatio()
    requests = [
        BatchRequest("POST", "Activity", {"Title": "one"}),
        BatchRequest("POST", "Activity", {"Title": ""}),
        BatchRequest("POST", "Activity", {"Title": "three"}),
    ]
    async with make_client(fake, login_settings()) as client:
        stopped = await client.batch(requests)
        went_on = await client.batch(requests, continue_on_error=True)
    assert [a.status for a in stopped] == [201, 400]
    assert [a.status for a in went_on] == [201, 400, 201]
    assert fake.requests_to("POST", "$batch")[1].headers["Prefer"] == "continue-on-error"


# -- files and check -------------------------------------------------------------------------


async def test_upload_file_sends_content_range_and_bytes():
    fake = FakeCreatio()
    file_id, case_id = str(uuid.uuid4()), str(uuid.uuid4())
    async with make_client(fake, login_settings()) as client:
        await client.upload_file(
            entity="CaseFile",
            file_id=file_id,
            parent_column="Case",
            parent_id=case_id,
            name="scan 1.pdf",
            content_type="application/pdf",
            data=b"%PDF-1.7 data",
        )
    assert fake.uploads[file_id] == b"%PDF-1.7 data"
    sent = fake.requests_to("POST", "UploadFile")[0]
    assert sent.url.params["fileName"] == "scan 1.pdf"
    assert sent.url.params["parentColumnValue"] == case_id


async def test_check_reports_active_or_exactly_what_failed():
    fake = FakeCreatio()
    async with make_client(fake, login_settings()) as client:
        assert (await client.check()).detail == "Active"
    async with make_client(fake, login_settings(password=Secret("bad-pass"))) as client:
        result = await client.check()
        assert not result.ok and "Invalid login or password" in result.detail
    forbidden = FakeCreatio()
    forbidden.faults.append(
        Fault(
            to("GET", "CaseStatus"),
            httpx.Response(403, json={"error": {"message": "Denied"}}),
            times=2,
        )
    )
    async with make_client(forbidden, login_settings()) as client:
        result = await client.check()
        assert not result.ok and "CanUseODataService" in result.detail
    async with make_client(FakeCreatio(), login_settings(odata_prefix="")) as client:
        result = await client.check()
        assert not result.ok and "odata_prefix" in result.detail

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("name resolution failed")

    settings = login_settings()
    async with CreatioClient(settings, transport=httpx.MockTransport(unreachable)) as client:
        result = await client.check()
        assert not result.ok and "unreachable" in result.detail


# -- secrets ---------------------------------------------------------------------------------


async def test_secrets_never_show_in_reprs_or_errors():
    settings = login_settings(webhook_secret=Secret("hook-s3cret"))
    fake = FakeCreatio()
    fake.faults.append(
        Fault(
            to("GET", "/odata/Case"), httpx.Response(500, json={"error": {"message": "x"}}), times=9
        )
    )
    async with make_client(fake, settings) as client:
        with pytest.raises(TransientError) as info:
            await client.query("Case", filter=eq("Subject", "a"))
        texts = [repr(settings), str(settings), repr(client), repr(client._auth), str(info.value)]
    for text in texts:
        for secret in (PASSWORD, "hook-s3cret", "sess1", "csrfsess1"):
            assert secret not in text
    oauth = oauth_settings()
    assert CLIENT_SECRET not in repr(oauth)


# -- the request path ------------------------------------------------------------------------


async def test_api_requests_keep_the_settings_timeout_on_a_real_connection():
    # A loopback server that signs in, then accepts API requests and never answers them.
    async def serve(stream) -> None:
        async with stream:
            head = await stream.receive()
            if b"AuthService.svc/Login" in head:
                body = b'{"Code":0}'
                await stream.send(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Set-Cookie: BPMCSRF=csrf1; path=/\r\nSet-Cookie: .ASPXAUTH=a1; path=/\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                head = await stream.receive()
            await anyio.sleep(30)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    settings = login_settings(url=f"http://127.0.0.1:{port}", timeout=0.3)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        async with CreatioClient(settings) as client:
            started = anyio.current_time()
            with pytest.raises(TransientError, match="unreachable"):
                await client.query("Case")
            assert anyio.current_time() - started < 3  # not httpx's default of 5 s
        tg.cancel_scope.cancel()


async def test_a_cookie_an_api_answer_sets_is_sent_with_the_next_requests_once():
    fake = FakeCreatio()
    refreshed = httpx.Response(
        200, json={"value": []}, headers={"Set-Cookie": "BPMLOADER=renewed; path=/"})
    fake.faults.append(Fault(to("GET", "/odata/Case"), refreshed))
    async with make_client(fake, login_settings()) as client:
        await client.query("Case")
        await client.query("Contact")
    sent = fake.requests_to("GET", "/odata/Contact")[0]
    assert sent.headers["Cookie"].count("BPMLOADER=") == 1
    assert "BPMLOADER=renewed" in sent.headers["Cookie"]
