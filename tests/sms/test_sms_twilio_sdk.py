"""The sandbox driven by Twilio's own Python SDK (``twilio.rest.Client``), as a real client
of Twilio would drive it, and the sandbox's webhook signatures checked by Twilio's own
``RequestValidator``. The SDK talks to the sandbox on loopback through an HTTP client that
rewrites https://api.twilio.com to it and refuses any other address."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
from casebridge.secrets import Secret
from casebridge_sms.sandbox import SandboxState, create_sandbox_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

TWILIO = "https://api.twilio.com"
SID = "AC" + "5" * 32
TOKEN = "sdk-test-token"
MG = "MG" + "6" * 32
OURS = "+15005550006"
OWN = "+14155550000"
ANN = "+14155550100"


class SandboxHttpClient(TwilioHttpClient):
    """Sends the SDK's requests for https://api.twilio.com to the sandbox on 127.0.0.1;
    any other address fails the test before a connection is tried."""

    def __init__(self, sandbox_url: str) -> None:
        super().__init__()
        self.sandbox_url = sandbox_url
        self.sent: list[str] = []

    def request(self, method: str, url: str, *args: object, **kwargs: object):  # type: ignore[override]
        assert url.startswith(TWILIO + "/"), f"the SDK asked for {url}"
        local = self.sandbox_url + url[len(TWILIO) :]
        assert urlsplit(local).hostname == "127.0.0.1", local
        self.sent.append(f"{method} {local}")
        return super().request(method, local, *args, **kwargs)


@pytest.fixture
def state() -> SandboxState:
    return SandboxState(
        account_sid=SID, auth_token=Secret(TOKEN), messaging_service_sid=MG, numbers=(OWN,)
    )


@pytest.fixture
def client(serve, state: SandboxState) -> Iterator[Client]:
    with serve(create_sandbox_app(state)) as url:
        http = SandboxHttpClient(url)
        yield Client(SID, TOKEN, http_client=http)
        assert http.sent, "the SDK sent nothing through the loopback client"


def wait_until(check) -> None:
    deadline = time.monotonic() + 10
    while not check():
        assert time.monotonic() < deadline, "not reached within 10 s"
        time.sleep(0.01)


def test_the_loopback_client_refuses_any_other_address() -> None:
    http = SandboxHttpClient("http://127.0.0.1:9")
    with pytest.raises(AssertionError, match=r"example\.com"):
        http.request("GET", "https://example.com/2010-04-01/Accounts.json")
    with pytest.raises(AssertionError, match=r"127\.0\.0\.1"):
        SandboxHttpClient("http://10.0.0.1:80").request("GET", TWILIO + "/x")
    assert http.sent == []


def test_sdk_sends_fetches_and_lists_by_date_sent(client: Client, state: SandboxState) -> None:
    sent = client.messages.create(to=ANN, from_=OURS, body="Your parcel left today.")
    wait_until(lambda: state.message(sent.sid)["status"] == "delivered")
    state.callback_statuses = ()  # the next one stays queued: no date_sent yet
    queued = client.messages.create(to=ANN, from_=OWN, body="Still in the queue.")
    assert (sent.status, queued.status) == ("queued", "queued")
    assert sent.num_segments == "1" and sent.to == ANN and sent.from_ == OURS

    fetched = client.messages(sent.sid).fetch()
    assert fetched.status == "delivered" and fetched.date_sent is not None
    assert client.messages(queued.sid).fetch().date_sent is None

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    by_date = client.messages.list(to=ANN, date_sent_after=today)
    on_day = client.messages.list(date_sent=today)
    before = client.messages.list(date_sent_before=datetime(2000, 1, 1, tzinfo=UTC))
    everything = client.messages.list(to=ANN, page_size=1)  # one per page: follows the pages
    assert [m.sid for m in by_date] == [m.sid for m in on_day] == [sent.sid]
    assert before == []
    assert [m.sid for m in everything] == [queued.sid, sent.sid]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"to": "+15005550004", "from_": OURS}, 21610),
        ({"to": ANN, "from_": "+15005550007"}, 21606),
        ({"to": ANN, "from_": "+15005550009"}, 21606),
        ({"to": ANN, "from_": "+14155550123"}, 21659),
        ({"to": ANN, "from_": "+15005550001"}, 21212),
        ({"to": "+1555", "from_": OURS}, 21211),
        ({"to": ANN, "messaging_service_sid": "MG" + "0" * 32}, 21701),
    ],
)
def test_sdk_gets_twilios_errors(client: Client, fields: dict[str, str], code: int) -> None:
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(body="hello", **fields)
    assert (caught.value.status, caught.value.code) == (400, code)
    assert caught.value.msg


def test_sdk_send_to_an_opted_out_number_is_21610(client: Client, state: SandboxState) -> None:
    state.opted_out.add((OWN, ANN))
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to=ANN, from_=OWN, body="After STOP")
    assert caught.value.code == 21610
    assert state.messages == []


def test_sdk_send_through_the_messaging_service_is_accepted(
    client: Client, state: SandboxState
) -> None:
    state.callback_statuses = ("sent",)
    message = client.messages.create(to=ANN, messaging_service_sid=MG, body="Hi from the pool")
    assert (message.status, message.from_, message.messaging_service_sid) == ("accepted", None, MG)
    wait_until(lambda: state.message(message.sid)["status"] == "sent")
    assert client.messages(message.sid).fetch().from_ == OWN


async def test_twilios_validator_accepts_the_sandboxs_webhooks(serve, state: SandboxState) -> None:
    verdicts: list[bool] = []

    async def inbound(request: Request) -> Response:
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        # Twilio's validator, given the URL with the port the request came in on.
        url = str(request.url)
        verdicts.append(
            RequestValidator(TOKEN).validate(url, form, request.headers["X-Twilio-Signature"])
        )
        return PlainTextResponse("<Response/>")

    with serve(Starlette(routes=[Route("/in", inbound, methods=["POST"])])) as base:
        answer = await state.send_inbound(
            f"{base}/in", ANN, OURS, "Hello ☺", [("https://m/1", "image/png")]
        )
    assert answer.status_code == 200 and verdicts == [True]
