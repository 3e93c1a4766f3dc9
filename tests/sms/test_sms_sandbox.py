"""The sandbox's inbound side and admin API, over real loopback HTTP."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import anyio
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
    # Twilio's opt-out handling answered HELP itself, before the API message.
    help_answer, api_message = listed["messages"]
    assert (help_answer["direction"], help_answer["to"]) == ("outbound-reply", "+14155550100")
    assert receiver.calls[0][0]["OptOutType"] == "HELP"
    assert api_message["sid"] == created.json()["sid"]
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
            state.numbers = ("+14155550000",)
            for to, sender in [("+14155550100", "+15005550006"), ("+14155550101", OWN)]:
                await client.post(api, data={"To": to, "From": sender, "Body": "á" * 71})
            by_from = await client.get(api, params={"From": OWN})
            queued = await client.get(api, params={"DateSent>": "2000-01-01"})
            # Once sent, a message has a date_sent and the DateSent filters see it.
            state.callback_statuses = ("sent",)
            sent = await client.post(api, data={"To": "+14155550102", "From": OWN, "Body": "s"})
            await wait_until(lambda: state.messages[-1]["date_sent"] is not None)
            today = datetime.now(UTC).date().isoformat()
            after = await client.get(api, params={"DateSent>": "2000-01-01"})
            on = await client.get(api, params={"DateSent": today})
            sdk_style = await client.get(api, params={"DateSent>": f"{today}T00:00:00Z"})
            before = await client.get(api, params={"DateSent<": "2000-01-01"})
            future = await client.get(api, params={"DateSent>": "2999-01-01"})
            bad_date = await client.get(api, params={"DateSent": "yesterday"})
    assert (too_long.status_code, too_long.json()["code"]) == (400, 21617)
    assert (no_from.status_code, no_from.json()["code"]) == (400, 21603)
    [only] = by_from.json()["messages"]
    assert only["to"] == "+14155550101"
    assert only["num_segments"] == "2"
    assert only["status"] == "queued"
    assert queued.json()["messages"] == []
    sid = sent.json()["sid"]
    for answer in (after, on, sdk_style):
        assert [m["sid"] for m in answer.json()["messages"]] == [sid]
    assert before.json()["messages"] == future.json()["messages"] == []
    assert bad_date.status_code == 400 and "yesterday" in bad_date.json()["message"]


OWN = "+14155550000"


async def wait_until(check) -> None:
    for _ in range(1000):
        if check():
            return
        await anyio.sleep(0.01)
    raise AssertionError("not reached within 10 s")


REFUSALS = [
    # Twilio's test numbers as From...
    ({"From": "+15005550001"}, 21212),
    ({"From": "+15005550007"}, 21606),
    ({"From": "+15005550008"}, 21611),
    ({"From": "+15005550009"}, 21606),
    # ... and as To.
    ({"To": "+15005550001"}, 21211),
    ({"To": "+15005550002"}, 21612),
    ({"To": "+15005550003"}, 21408),
    ({"To": "+15005550004"}, 21610),
    ({"To": "+15005550009"}, 21614),
    # Not a possible number, not our number, not our messaging service.
    ({"To": "+1555"}, 21211),
    ({"To": "14155550100"}, 21211),
    ({"From": "+1555"}, 21212),
    ({"From": "+14155550123"}, 21659),
    ({"From": "", "MessagingServiceSid": "MG" + "c" * 32}, 21701),
    ({"To": ""}, 21604),
    ({"Body": ""}, 21602),
]


async def test_create_refuses_as_twilio_does(serve, state: SandboxState) -> None:
    state.numbers, state.callback_statuses = (OWN,), ()
    api = f"/2010-04-01/Accounts/{SID}/Messages.json"
    base = {"To": "+14155550100", "From": "+15005550006", "Body": "hello"}
    with serve(create_sandbox_app(state)) as url:
        async with httpx.AsyncClient(base_url=url, auth=(SID, TOKEN)) as client:
            answers = [
                (change, code, await client.post(api, data={**base, **change}))
                for change, code in REFUSALS
            ]
            good = [
                await client.post(api, data={**base, **change})
                for change in ({}, {"From": OWN}, {"From": "", "MessagingServiceSid": MG})
            ]
    for change, code, answer in answers:
        body = answer.json()
        assert (answer.status_code, body["code"], body["status"]) == (400, code, 400), change
        assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
        assert body["message"]
    assert [a.status_code for a in good] == [201, 201, 201]
    assert [a.json()["status"] for a in good] == ["queued", "queued", "accepted"]
    assert good[2].json()["from"] is None and good[2].json()["messaging_service_sid"] == MG
    assert len(state.messages) == 3


MG = "MG" + "b" * 32


async def test_opt_out_handling_blocks_answers_and_tags_the_webhook(
    serve, state: SandboxState
) -> None:
    receiver = Receiver()
    api = f"/2010-04-01/Accounts/{SID}/Messages.json"
    send = {"To": "+14155550100", "From": "+15005550006", "Body": "Your order shipped"}
    state.callback_statuses = ()
    with serve(receiver.app) as base, serve(create_sandbox_app(state)) as url:
        receiver.url = f"{base}/sms/inbound"
        async with httpx.AsyncClient(base_url=url, auth=(SID, TOKEN)) as client:
            await state.send_inbound(receiver.url, "+14155550100", "+15005550006", "Stop")
            blocked = await client.post(api, data=send)
            via_service = await client.post(
                api, data={**send, "From": "", "MessagingServiceSid": MG}
            )
            other_number = await client.post(api, data={**send, "To": "+14155550101"})
            await state.send_inbound(receiver.url, "+14155550100", "+15005550006", "START")
            again = await client.post(api, data=send)
            await state.send_inbound(receiver.url, "+14155550100", "+15005550006", "stop it")
    assert [c[0].get("OptOutType") for c in receiver.calls] == ["STOP", "START", None]
    assert all(ok for _, ok in receiver.calls)
    assert (blocked.status_code, blocked.json()["code"]) == (400, 21610)
    assert (via_service.status_code, via_service.json()["code"]) == (400, 21610)
    assert other_number.status_code == again.status_code == 201
    replies = [m for m in state.messages if m["direction"] == "outbound-reply"]
    assert [(m["from"], m["to"], m["status"]) for m in replies] == [
        ("+15005550006", "+14155550100", "delivered")
    ] * 2
    assert "unsubscribed" in replies[0]["body"] and "re-subscribed" in replies[1]["body"]


async def test_opt_out_handling_can_be_switched_off(serve, state: SandboxState) -> None:
    receiver = Receiver()
    api = f"/2010-04-01/Accounts/{SID}/Messages.json"
    with serve(receiver.app) as base, serve(create_sandbox_app(state)) as url:
        receiver.url = f"{base}/sms/inbound"
        state.advanced_opt_out = False
        await state.send_inbound(receiver.url, "+14155550100", "+15005550006", "STOP")
        state.opt_out_handling = False
        await state.send_inbound(receiver.url, "+14155550101", "+15005550006", "STOP")
        async with httpx.AsyncClient(base_url=url, auth=(SID, TOKEN)) as client:
            data = {"To": "+14155550101", "From": "+15005550006", "Body": "hi"}
            sent = await client.post(api, data=data)
    # Without Advanced Opt-Out the webhook does not say; switched off, nothing is blocked.
    assert [c[0].get("OptOutType") for c in receiver.calls] == [None, None]
    assert [m["to"] for m in state.messages] == ["+14155550100", "+14155550101"]
    assert sent.status_code == 201
