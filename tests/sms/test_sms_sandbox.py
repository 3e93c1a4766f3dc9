"""The sandbox's inbound side and admin API, over real loopback HTTP."""

from __future__ import annotations

import re

import httpx
import pytest
from casebridge.secrets import Secret
from casebridge_sms.sandbox import SandboxState, create_sandbox_app
from casebridge_sms.signature import verify_signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

pytestmark = pytest.mark.anyio

TOKEN = "inbound-token-xyz"
SID = "AC" + "a" * 32


class Receiver:
    """A tiny bridge webhook that checks the signature the way the SMS plugin will."""

    def __init__(self) -> None:
        self.url = ""
        self.calls: list[tuple[dict[str, str], bool]] = []
        self.app = Starlette(routes=[Route("/sms/inbound", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Response:
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        ok = verify_signature(TOKEN, self.url, form, request.headers.get("X-Twilio-Signature", ""))
        self.calls.append((form, ok))
        return PlainTextResponse("<Response/>", status_code=200 if ok else 403)


@pytest.fixture
def state() -> SandboxState:
    return SandboxState(
        account_sid=SID, auth_token=Secret(TOKEN), messaging_service_sid="MG" + "b" * 32
    )


async def test_send_inbound_is_signed_over_the_webhook_url(serve, state: SandboxState) -> None:
    receiver = Receiver()
    with serve(receiver.app) as base:
        receiver.url = f"{base}/sms/inbound?channel=sms"
        media = [
            ("https://media.example.test/1.jpg", "image/jpeg"),
            ("https://m.test/2", "image/png"),
        ]
        answer = await state.send_inbound(
            receiver.url, "+14155550100", "+15005550006", "STOP", media
        )
        plain = await state.send_inbound(receiver.url, "+14155550100", "+15005550006", "hi €")
    assert answer.status_code == 200
    assert plain.status_code == 200
    (form, ok), (plain_form, plain_ok) = receiver.calls
    assert ok and plain_ok
    assert re.fullmatch(r"MM[0-9a-f]{32}", form["MessageSid"])
    assert re.fullmatch(r"SM[0-9a-f]{32}", plain_form["MessageSid"])
    assert form["AccountSid"] == SID
    assert form["MessagingServiceSid"] == "MG" + "b" * 32
    assert (form["From"], form["To"], form["Body"]) == ("+14155550100", "+15005550006", "STOP")
    assert form["NumMedia"] == "2"
    assert form["MediaUrl1"] == "https://m.test/2"
    assert form["MediaContentType0"] == "image/jpeg"
    assert plain_form["NumMedia"] == "0"
    assert "MediaUrl0" not in plain_form
    assert len(state.inbound) == 2


async def test_a_wrong_token_fails_the_receivers_check(serve) -> None:
    receiver = Receiver()
    impostor = SandboxState(account_sid=SID, auth_token=Secret("other-token"))
    with serve(receiver.app) as base:
        receiver.url = f"{base}/sms/inbound"
        answer = await impostor.send_inbound(receiver.url, "+14155550100", "+15005550006", "x")
    assert answer.status_code == 403
    assert receiver.calls[0][1] is False


async def test_admin_api_drives_inbound_and_shows_messages(serve, state: SandboxState) -> None:
    receiver = Receiver()
    with serve(receiver.app) as base, serve(create_sandbox_app(state)) as url:
        receiver.url = f"{base}/sms/inbound"
        state.webhook_url = receiver.url
        async with httpx.AsyncClient(base_url=url) as client:
            triggered = await client.post(
                "/sandbox/inbound",
                json={"from": "+14155550100", "to": "+15005550006", "body": "help"},
            )
            bad = await client.post("/sandbox/inbound", json={"from": "+1", "body": 3})
            deep = await client.post("/sandbox/inbound", content=b"[" * 100_000)
            assert deep.status_code == 400, deep.text
            assert "nested deeper than 64 levels" in deep.json()["error"]
            api = f"/2010-04-01/Accounts/{SID}/Messages.json"
            created = await client.post(
                api,
                data={"To": "+14155550100", "From": "+15005550006", "Body": "hello"},
                auth=(SID, TOKEN),
            )
            listed = (await client.get("/sandbox/messages")).json()
    assert triggered.status_code == 200
    assert triggered.json()["webhook_status"] == 200
    assert receiver.calls[0][0]["Body"] == "help"
    assert triggered.json()["message_sid"] == receiver.calls[0][0]["MessageSid"]
    assert bad.status_code == 400
    assert "to, body" in bad.json()["error"]
    assert created.status_code == 201
    assert [m["sid"] for m in listed["messages"]] == [created.json()["sid"]]
    assert listed["inbound"][0]["form"]["Body"] == "help"


async def test_create_validates_and_lists_with_filters(serve, state: SandboxState) -> None:
    state.callback_statuses = ()
    api = f"/2010-04-01/Accounts/{SID}/Messages.json"
    with serve(create_sandbox_app(state)) as url:
        async with httpx.AsyncClient(base_url=url, auth=(SID, TOKEN)) as client:
            too_long = await client.post(
                api, data={"To": "+14155550100", "From": "+15005550006", "Body": "x" * 1601}
            )
            no_from = await client.post(api, data={"To": "+14155550100", "Body": "x"})
            for to, sender in [("+14155550100", "+15005550006"), ("+14155550101", "+15005550007")]:
                await client.post(api, data={"To": to, "From": sender, "Body": "á" * 71})
            by_from = await client.get(api, params={"From": "+15005550007"})
            today = await client.get(api, params={"DateSent>": "2000-01-01"})
            future = await client.get(api, params={"DateSent>": "2999-01-01"})
            bad_date = await client.get(api, params={"DateSent": "yesterday"})
    assert (too_long.status_code, too_long.json()["code"]) == (400, 21617)
    assert (no_from.status_code, no_from.json()["code"]) == (400, 21603)
    [only] = by_from.json()["messages"]
    assert only["to"] == "+14155550101"
    assert only["num_segments"] == "2"
    assert only["status"] == "queued"
    assert len(today.json()["messages"]) == 2
    assert future.json()["messages"] == []
    assert bad_date.status_code == 400
