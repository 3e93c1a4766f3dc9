"""The SMS channel end to end: a real bridge (SQLite store, the example JSON-lines CRM
installed by entry point, the sms plugin by its own entry point), the sandbox provider
started as the plugin's service, and the plugin's webhooks served over loopback HTTP."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
from casebridge import deliveries
from casebridge.bridge import Bridge
from casebridge.deliveries import ReplyState
from casebridge.model import Author, SessionStatus
from casebridge.web import create_app, serve
from casebridge_sms.keywords import Keyword
from casebridge_sms.plugin import SmsPlugin
from casebridge_sms.sandbox import SandboxState
from casebridge_sms.sandbox_rules import AUTO_REPLIES
from casebridge_sms.settings import INBOUND_PATH, STATUS_PATH
from casebridge_sms.signature import compute_signature
from starlette.applications import Starlette
from starlette.routing import Mount
from support.bridges import HOOK_TOKEN, install_jsonl, jsonl_records, settle, write_config

OUR = "+15005550006"
ANN = "+14155550100"
BOB = "+14155550199"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def sms_config(root: Path, **sms: object) -> tuple[Path, int]:
    port = free_port()
    path = write_config(
        root,
        bridge={"channels": ["sms"], "public_url": f"http://127.0.0.1:{port}"},
        http={"port": port},
        plugins={"sms": {"provider": "sandbox", "numbers": [OUR], **sms}},
    )
    return path, port


@dataclass
class World:
    bridge: Bridge
    plugin: SmsPlugin
    sandbox: SandboxState
    base: str

    @property
    def inbound_url(self) -> str:
        return self.base + INBOUND_PATH

    async def sms(self, body: str, sender: str = ANN, to: str = OUR) -> httpx.Response:
        return await self.sandbox.send_inbound(self.inbound_url, sender, to, body)

    async def post_signed(self, path: str, form: dict[str, str], *,
                          token: str | None = None, sign: bool = True) -> httpx.Response:
        url = self.base + path
        token = token or self.sandbox.auth_token.reveal()
        headers = {"X-Twilio-Signature": compute_signature(token, url, form)} if sign else {}
        async with httpx.AsyncClient() as client:
            return await client.post(url, data=form, headers=headers)

    async def rep_reply(self, case_id: str, text: str, activity_id: str) -> None:
        event = {"event_type": "new_activity", "caseId": case_id, "activityId": activity_id,
                 "text": text, "author": "Rita Rep"}
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"{self.base}/webhooks/jsonl/{HOOK_TOKEN}",
                                       content=json.dumps(event))
        assert answer.status_code == 200, answer.text
        await settle(self.bridge)

    def sent_to(self, number: str) -> list[dict]:
        return [m for m in self.sandbox.messages if m["to"] == number]

    async def state(self, key: str):
        return await self.bridge.store.get_state("sms", key)


def plugin_routes_first(bridge: Bridge) -> Starlette:
    # core/casebridge/web.py lists plugin routes after its own /webhooks/{crm}/{token}, which
    # shadows /webhooks/sms/...: serve the plugin's routes ahead of the core app (see
    # test_the_core_app_reaches_the_sms_webhooks below).
    return Starlette(routes=[*bridge.hooks.http_routes(), Mount("", create_app(bridge))])


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    install_jsonl(monkeypatch, tmp_path)
    path, port = sms_config(tmp_path, max_segments=4)
    async for world in running(path, port):
        yield world


async def running(path: Path, port: int) -> AsyncIterator[World]:
    """What ``Bridge.run`` does (services, HTTP server), with the outbox left to settle()."""
    bridge = Bridge.from_config(path)
    plugin = bridge.pm.get_plugin("sms")
    assert isinstance(plugin, SmsPlugin)
    await bridge.open()
    try:
        async with anyio.create_task_group() as tg:
            for service in bridge.hooks.services():
                await tg.start(service.run)
            await tg.start(serve, plugin_routes_first(bridge), "127.0.0.1", port)
            assert plugin.sandbox is not None
            yield World(bridge, plugin, plugin.sandbox, f"http://127.0.0.1:{port}")
            tg.cancel_scope.cancel()
    finally:
        await bridge.close()


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(1000):
        if await check():
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def handed_off(world: World, sender: str = ANN):
    """A session of ``sender`` handed off to a case (the customer asks for a human)."""
    answer = await world.sms("I need to talk to a human about my bill", sender=sender)
    assert answer.status_code == 200
    await settle(world.bridge)
    [session] = [s for s in await world.bridge.store.list_sessions()
                 if s.contact.phones == (sender,)]
    assert session.status is SessionStatus.HANDED_OFF and session.case is not None
    return session


async def test_inbound_sms_becomes_a_session_and_the_next_one_joins_it(world: World) -> None:
    answer = await world.sms("My router blinks red.")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/xml")
    assert answer.text.endswith("<Response/>")
    await settle(world.bridge)
    [session] = await world.bridge.store.list_sessions()
    assert session.channel == "sms" and session.channel_address == OUR
    assert session.contact.phones == (ANN,)
    [first] = await world.bridge.store.transcript(session.id)
    assert (first.sender, first.recipients, first.text) == (ANN, (OUR,), "My router blinks red.")
    assert first.external_id == world.sandbox.inbound[0]["form"]["MessageSid"]

    await world.sms("It still blinks.")
    await world.sms("Hello, different person here", sender=BOB)
    await settle(world.bridge)
    sessions = await world.bridge.store.list_sessions()
    assert len(sessions) == 2
    transcript = await world.bridge.store.transcript(session.id)
    assert [m.text for m in transcript] == ["My router blinks red.", "It still blinks."]
    assert all(m.author is Author.CUSTOMER for m in transcript)


async def test_a_retried_webhook_with_the_same_message_sid_is_stored_once(world: World) -> None:
    form = {"MessageSid": "SM" + "1" * 32, "AccountSid": world.sandbox.account_sid,
            "From": ANN, "To": OUR, "Body": "Is my order shipped?", "NumMedia": "0"}
    first = await world.post_signed(INBOUND_PATH, form)
    again = await world.post_signed(INBOUND_PATH, form)
    assert (first.status_code, again.status_code) == (200, 200)
    await settle(world.bridge)
    [session] = await world.bridge.store.list_sessions()
    assert [m.text for m in await world.bridge.store.transcript(session.id)] == [
        "Is my order shipped?"
    ]


async def test_forged_or_missing_signature_is_refused_with_403(world: World, caplog) -> None:
    form = {"MessageSid": "SM" + "2" * 32, "From": ANN, "To": OUR, "Body": "hi"}
    forged = await world.post_signed(INBOUND_PATH, form, token="not-the-token")
    missing = await world.post_signed(INBOUND_PATH, form, sign=False)
    tampered = {**form, "Body": "hi there"}
    url = world.base + INBOUND_PATH
    async with httpx.AsyncClient() as client:
        moved = await client.post(url, data=tampered, headers={
            "X-Twilio-Signature": compute_signature(world.sandbox.auth_token.reveal(), url, form)
        })
    status = await world.post_signed(STATUS_PATH, {"MessageSid": "SMx", "MessageStatus": "sent"},
                                     token="not-the-token")
    assert [r.status_code for r in (forged, missing, moved, status)] == [403, 403, 403, 403]
    assert "X-Twilio-Signature" in forged.text and "X-Twilio-Signature" in missing.text
    assert await world.bridge.store.list_sessions() == []
    assert await world.bridge.store.list_dropped() == []
    assert await world.state("status:SMx") is None
    logged = caplog.text
    assert "refused" in logged and world.sandbox.auth_token.reveal() not in logged


async def test_a_webhook_for_another_number_is_refused(world: World) -> None:
    form = {"MessageSid": "SM" + "3" * 32, "From": ANN, "To": "+14155550123", "Body": "hi"}
    other = await world.post_signed(INBOUND_PATH, form)
    no_to = await world.post_signed(INBOUND_PATH, {k: v for k, v in form.items() if k != "To"})
    assert other.status_code == 404 and "+14155550123" in other.text
    assert no_to.status_code == 400 and "no To" in no_to.text
    assert await world.bridge.store.list_sessions() == []


async def test_stop_opts_out_once_start_opts_in_help_answers(world: World) -> None:
    stop = {"MessageSid": "SM" + "4" * 32, "From": ANN, "To": OUR, "Body": " Stop. "}
    assert (await world.post_signed(INBOUND_PATH, stop)).status_code == 200
    assert (await world.post_signed(INBOUND_PATH, stop)).status_code == 200  # a retry
    await settle(world.bridge)
    settings = world.plugin.settings
    assert [m["body"] for m in world.sent_to(ANN)] == [settings.opt_out_confirmation]
    assert world.sent_to(ANN)[0]["from"] == OUR
    assert (await world.state(f"optout:{ANN}"))["message_sid"] == stop["MessageSid"]
    assert await world.bridge.store.list_sessions() == []
    assert jsonl_records(world.bridge, "case") == []
    [dropped] = await world.bridge.store.list_dropped()
    assert (dropped.reason, dropped.external_id) == ("opt-out keyword STOP", stop["MessageSid"])

    # Through the provider, whose opt-out handling answers keywords itself and says so
    # (OptOutType): the bridge records them and sends nothing more.
    assert (await world.sms("HELP")).status_code == 200
    assert (await world.sms("start")).status_code == 200
    await settle(world.bridge)
    assert [m["body"] for m in world.sent_to(ANN)][1:] == [
        AUTO_REPLIES[Keyword.HELP], AUTO_REPLIES[Keyword.OPT_IN]
    ]
    assert [m["direction"] for m in world.sent_to(ANN)][1:] == ["outbound-reply"] * 2
    assert await world.state(f"optout:{ANN}") is None
    assert await world.bridge.store.list_sessions() == []
    reasons = sorted(d.reason for d in await world.bridge.store.list_dropped())
    assert reasons == ["help keyword HELP (answered by the provider)",
                       "opt-in keyword START (answered by the provider)",
                       "opt-out keyword STOP"]


async def test_a_rep_reply_goes_out_as_sms_with_its_segment_count(world: World) -> None:
    session = await handed_off(world)
    [case] = jsonl_records(world.bridge, "case")
    reply = "We found the problem with your bill and corrected it. " * 6  # 336 GSM-7 chars
    await world.rep_reply(case["id"], reply.strip(), "rep-1")

    [sent] = world.sent_to(ANN)
    assert sent["body"] == reply.strip() and sent["from"] == OUR
    assert sent["num_segments"] == "3"
    transcript = await world.bridge.store.transcript(session.id)
    assert transcript[-1].author is Author.AGENT and transcript[-1].text == reply.strip()
    attempt = await world.bridge.pipeline.replies.delivery_log.get(transcript[-1].id)
    assert attempt is not None and attempt.delivery is not None
    assert (attempt.delivery.external_id, attempt.delivery.segments) == (sent["sid"], 3)
    assert await world.state(f"sent:{sent['sid']}") == transcript[-1].id

    # The sandbox reports sent, then delivered, to our status webhook.
    async def delivered() -> bool:
        record = await world.state(f"status:{sent['sid']}")
        return record is not None and record["status"] == "delivered"

    await eventually(delivered, "the delivered status callback")
    record = await world.state(f"status:{sent['sid']}")
    # "queued" (from the send's answer) may be recorded before or after the "sent" callback.
    assert sorted(record["seen"]) == ["delivered", "queued", "sent"]
    assert all(c["http_status"] == 204 for c in world.sandbox.callbacks)
    # The bridge's own delivery state follows the callbacks.
    # (The callback may beat the send's own bookkeeping, which then reports it: wait.)
    async def bridge_knows() -> bool:
        state = await deliveries.get(world.bridge.store, transcript[-1].id)
        return state is not None and state.state is ReplyState.DELIVERED

    await eventually(bridge_knows, "the reply's delivered state")
    state = await deliveries.get(world.bridge.store, transcript[-1].id)
    assert state is not None
    assert state.external_id == sent["sid"]


async def test_a_reply_to_an_opted_out_number_is_refused_and_noted_on_the_case(
    world: World,
) -> None:
    session = await handed_off(world)
    [case] = jsonl_records(world.bridge, "case")
    assert (await world.sms("STOP")).status_code == 200
    await world.rep_reply(case["id"], "Your refund is on its way.", "rep-2")

    # The provider's own confirmation only: the bridge knew of the STOP and sent nothing.
    assert [m["body"] for m in world.sent_to(ANN)] == [AUTO_REPLIES[Keyword.OPT_OUT]]
    transcript = await world.bridge.store.transcript(session.id)
    note = transcript[-1]
    assert note.author is Author.SYSTEM and "opted out of SMS (STOP)" in note.text
    state = await deliveries.get(world.bridge.store, transcript[-2].id)
    assert state is not None and state.state is ReplyState.REFUSED
    assert "opted out" in state.detail
    bodies = [a["body"] for a in jsonl_records(world.bridge, "activity")]
    assert any("opted out of SMS (STOP)" in body and "refused" in body for body in bodies)


async def test_an_over_long_reply_is_refused_not_cut(world: World) -> None:
    session = await handed_off(world)
    [case] = jsonl_records(world.bridge, "case")
    await world.rep_reply(case["id"], "Ä long answer with details. " * 30, "rep-3")  # > 4 parts

    assert world.sent_to(ANN) == []
    note = (await world.bridge.store.transcript(session.id))[-1]
    assert note.author is Author.SYSTEM
    assert "SMS segments" in note.text and "limit of 4" in note.text
    assert any("limit of 4" in a["body"] for a in jsonl_records(world.bridge, "activity"))


async def test_status_callbacks_move_forward_only_and_deduplicate(world: World) -> None:
    sid = "SM" + "5" * 32

    async def report(status: str, **extra: str) -> int:
        form = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC1", **extra}
        return (await world.post_signed(STATUS_PATH, form)).status_code

    assert await report("sent") == 204
    assert (await world.state(f"status:{sid}"))["status"] == "sent"
    assert await report("queued") == 204  # late and out of order
    assert await report("delivered") == 204
    assert await report("sent") == 204  # a retried callback
    assert await report("undelivered", ErrorCode="30003") == 204
    record = await world.state(f"status:{sid}")
    assert record["status"] == "delivered" and record["error_code"] == ""
    assert record["seen"] == ["sent", "queued", "delivered", "undelivered"]
    assert await report("teleported") == 400
    assert (await world.post_signed(STATUS_PATH, {"MessageSid": sid})).status_code == 400


async def test_an_over_long_inbound_is_refused_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_jsonl(monkeypatch, tmp_path)
    path, port = sms_config(tmp_path, max_body_chars=20)
    async for world in running(path, port):
        answer = await world.sms("This message is much longer than twenty characters.")
        assert answer.status_code == 400 and "max_body_chars" in answer.text
        await settle(world.bridge)
        assert await world.bridge.store.list_sessions() == []
        [dropped] = await world.bridge.store.list_dropped()
        assert "over the limit of 20" in dropped.reason


async def test_the_core_app_reaches_the_sms_webhooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_jsonl(monkeypatch, tmp_path)
    path, _ = sms_config(tmp_path)
    bridge = Bridge.from_config(path)
    async with anyio.create_task_group() as tg:
        await tg.start(bridge.run)
        plugin = bridge.pm.get_plugin("sms")
        answer = await plugin.sandbox.send_inbound(plugin.inbound_url, ANN, OUR, "hello")
        tg.cancel_scope.cancel()
    assert answer.status_code == 200


async def test_behind_a_proxy_the_signature_covers_public_base_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_jsonl(monkeypatch, tmp_path)
    public = "https://sms.example.test/casebridge"
    path, port = sms_config(tmp_path, public_base_url=public)
    async for world in running(path, port):
        assert world.plugin.inbound_url == public + INBOUND_PATH
        form = {"MessageSid": "SM" + "6" * 32, "From": ANN, "To": OUR, "Body": "via proxy"}
        token = world.sandbox.auth_token.reveal()
        async with httpx.AsyncClient() as client:
            local = await world.post_signed(INBOUND_PATH, form)
            proxied = await client.post(
                world.base + INBOUND_PATH, data=form,
                headers={"X-Twilio-Signature": compute_signature(
                    token, public + INBOUND_PATH, form)},
            )
        assert (local.status_code, proxied.status_code) == (403, 200)
        await settle(world.bridge)
        [session] = await world.bridge.store.list_sessions()
        assert session.contact.phones == (ANN,)
