"""The SMS plugin's hooks called directly, its settings, and its pure helpers."""

from __future__ import annotations

import base64
import hashlib
import socket
import string
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
import tomli_w
from casebridge.bridge import Bridge
from casebridge.config import build
from casebridge.delivery_log import NAMESPACE, Attempt, Stage
from casebridge.errors import ConfigError, PermanentError, TransientError
from casebridge.model import (
    Author,
    Contact,
    Delivery,
    DeliveryState,
    Direction,
    Message,
    RawInbound,
    Session,
    SessionStatus,
    derived_id,
    utcnow,
)
from casebridge.plugin import PluginContext
from casebridge.secrets import Secret
from casebridge_sms.keyword_answers import keyword_word
from casebridge_sms.media import media_fields
from casebridge_sms.plugin import SmsPlugin
from casebridge_sms.sandbox import SandboxState, create_sandbox_app
from casebridge_sms.settings import SmsSettings
from casebridge_sms.webhook import STATUS_RANK, advance_status, form_fields, our_channel
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from support.bridges import install_jsonl, write_config

OUR = "+15005550006"
ANN = "+14155550100"
TOKEN = "hooks-test-token"


@dataclass
class Rig:
    bridge: Bridge
    plugin: SmsPlugin
    sandbox: SandboxState


async def rig(root: Path, monkeypatch: pytest.MonkeyPatch, **sms: object) -> AsyncIterator[Rig]:
    """A configured bridge with only the sms plugin's service (the sandbox) running."""
    install_jsonl(monkeypatch, root)
    path = write_config(root, bridge={"channels": ["sms"]}, plugins={
        "sms": {"provider": "sandbox", "numbers": [OUR], "auth_token": TOKEN, **sms}
    })
    bridge = Bridge.from_config(path)
    plugin = bridge.pm.get_plugin("sms")
    await bridge.open()
    try:
        async with anyio.create_task_group() as tg:
            [service] = bridge.hooks.services()
            await tg.start(service.run)
            plugin.sandbox.callback_statuses = ()  # nothing listens for status callbacks here
            yield Rig(bridge, plugin, plugin.sandbox)
            tg.cancel_scope.cancel()
    finally:
        await bridge.close()


@pytest.fixture
async def sms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Rig]:
    async for r in rig(tmp_path, monkeypatch):
        yield r


def raw(**fields: str) -> RawInbound:
    base = {"MessageSid": "SM" + "a" * 32, "From": ANN, "To": OUR, "Body": "hello"}
    return RawInbound(channel="sms", fields={**base, **fields})


def reply(message_id: str, text: str, recipient: str = ANN) -> tuple[Session, Message]:
    session = Session(id="s1", channel="sms", contact=Contact("c1", phones=(ANN,)),
                      status=SessionStatus.HANDED_OFF, channel_address=OUR)
    message = Message(id=message_id, channel="sms", direction=Direction.OUTBOUND,
                      author=Author.AGENT, external_id=f"casebridge:{message_id}", sender=OUR,
                      recipients=(recipient,), text=text, session_id="s1")
    return session, message


# -- ingest -----------------------------------------------------------------------------


async def test_hook_ingest_sms_normalizes_numbers_and_references_mms_media(sms: Rig) -> None:
    inbound = await sms.plugin.ingest(raw(
        From="(415) 555-0100", To="500-555-0006", Body="Photo of the damage",
        NumMedia="2", MediaUrl0="https://media.test/a.jpg", MediaContentType0="image/jpeg",
        MediaUrl1="https://media.test/b", MessagingServiceSid="MG1", NumSegments="1",
    ))
    message = inbound.message
    assert message is not None and inbound.dropped == ""
    assert message.id == derived_id("sms", "SM" + "a" * 32)
    assert (message.channel, message.direction, message.author) == (
        "sms", Direction.INBOUND, Author.CUSTOMER)
    assert (message.sender, message.recipients) == (ANN, (OUR,))
    assert message.text == message.original_text == "Photo of the damage"
    assert [(a.name, a.content_type, a.location, a.size, a.sha256)
            for a in message.attachments] == [
        ("media0", "image/jpeg", "https://media.test/a.jpg", 0, ""),
        ("media1", "application/octet-stream", "https://media.test/b", 0, ""),
    ]
    assert dict(message.meta) == {"messaging_service_sid": "MG1", "num_segments": "1"}


async def test_hook_ingest_sms_refuses_what_it_cannot_read(sms: Rig) -> None:
    with pytest.raises(PermanentError, match="MessageSid"):
        await sms.plugin.ingest(RawInbound(channel="sms", fields={"From": ANN, "To": OUR}))
    with pytest.raises(PermanentError, match="From: 'nobody'"):
        await sms.plugin.ingest(raw(From="nobody"))
    with pytest.raises(PermanentError, match="1601 characters, over the limit of 1600"):
        await sms.plugin.ingest(raw(Body="x" * 1601))
    with pytest.raises(PermanentError, match="NumMedia"):
        await sms.plugin.ingest(raw(NumMedia="two"))


async def test_hook_ingest_sms_downloads_media_with_credentials_and_a_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve
) -> None:
    small, big = b"\x89PNG" + bytes(range(256)) * 2, b"z" * 5000
    expected = "Basic " + base64.b64encode(f"{'AC' + '0' * 32}:{TOKEN}".encode()).decode()

    async def media(request: Request) -> Response:
        if request.headers.get("authorization") != expected:
            return Response(status_code=401)
        data = {"small": small, "big": big}.get(request.path_params["name"])
        return Response(data, media_type="image/png") if data else Response(status_code=404)

    with serve(Starlette(routes=[Route("/media/{name}", media)])) as base:
        async for r in rig(tmp_path, monkeypatch, download_media=True, max_media_bytes=1000):
            inbound = await r.plugin.ingest(raw(
                NumMedia="3", MediaUrl0=f"{base}/media/small", MediaContentType0="image/png",
                MediaUrl1=f"{base}/media/big", MediaContentType1="image/png",
                MediaUrl2=f"{base}/media/gone", MediaContentType2="image/png",
            ))
            data_dir = r.bridge.data_dir
    kept, too_big, gone = inbound.message.attachments
    assert kept.sha256 == hashlib.sha256(small).hexdigest() and kept.size == len(small)
    assert (data_dir / "attachments" / kept.location).read_bytes() == small
    assert not kept.refused
    assert "1000-byte limit" in too_big.refused and too_big.location == f"{base}/media/big"
    assert "HTTP 404" in gone.refused
    assert len(inbound.message.notes) == 2 and "media1 not kept" in inbound.message.notes[0]


# -- deliver_reply, reconcile_delivery ----------------------------------------------------


async def delivered(r: Rig, session: Session, message: Message) -> Delivery:
    """Through the core's at-most-once path, as the pipeline delivers."""
    return await r.bridge.pipeline.replies.delivery_log.deliver(session, message, [])


async def test_hook_deliver_reply_sends_once_per_message(sms: Rig) -> None:
    session, message = reply("m1", "Your parcel left “today” — track it online.")
    first = await delivered(sms, session, message)
    again = await delivered(sms, session, message)
    assert first.state is DeliveryState.SENT and again == first
    [sent] = sms.sandbox.messages
    # Smart encoding turned the typography into GSM-7: one part, not two UCS-2 parts.
    assert sent["body"] == 'Your parcel left "today" - track it online.'
    assert (first.external_id, first.segments) == (sent["sid"], 1)
    assert (sent["to"], sent["from"]) == (ANN, OUR)
    status = await sms.bridge.store.get_state("sms", f"status:{sent['sid']}")
    assert status["status"] == "queued"
    assert await sms.bridge.store.get_state("sms", f"sent:{sent['sid']}") == "m1"


async def test_hook_reconcile_delivery_finds_a_send_left_by_a_crash(sms: Rig) -> None:
    provider = sms.plugin.provider()
    before = utcnow() - timedelta(seconds=5)
    # The first run sent the SMS, then died before the core recorded the outcome. The
    # sandbox keeps it queued (no date_sent), as Twilio does until it goes out.
    earlier = await provider.send(ANN, "We called you back.", from_=OUR)
    assert sms.sandbox.messages[0]["date_sent"] is None
    session, message = reply("m2", "We called you back.")
    found = await sms.plugin.reconcile_delivery(session, message, before)
    assert found is not None
    assert (found.state, found.external_id, found.segments) == (
        DeliveryState.SENT, earlier.sid, 1)
    assert await sms.bridge.store.get_state("sms", f"sent:{earlier.sid}") == "m2"
    # Another reply with the same words whose run died before sending: the SMS that
    # belongs to m2 is not taken for it.
    session, other = reply("m3", "We called you back.")
    assert await sms.plugin.reconcile_delivery(session, other, before) is None
    # Nothing that recent: not sent.
    assert await sms.plugin.reconcile_delivery(session, other, utcnow() + timedelta(days=1)) \
        is None
    assert len(sms.sandbox.messages) == 1


async def test_hook_reconcile_delivery_through_the_core_never_sends_twice(sms: Rig) -> None:
    # What a runner killed mid-send leaves: the core's intent, no outcome; the SMS went out.
    earlier = await sms.plugin.provider().send(ANN, "Refund approved.", from_=OUR)
    intent = Attempt("m4", "sms", Stage.SENDING, utcnow() - timedelta(seconds=5))
    await sms.bridge.store.put_state(NAMESPACE, "m4", intent.as_json())
    session, message = reply("m4", "Refund approved.")
    delivery = await delivered(sms, session, message)
    assert (delivery.state, delivery.external_id) == (DeliveryState.SENT, earlier.sid)
    # Its run died before sending: the lookup finds nothing, so it is sent, once.
    await sms.bridge.store.put_state(NAMESPACE, "m5", {**intent.as_json()})
    session, message = reply("m5", "Refund approved.")
    resent = await delivered(sms, session, message)
    assert resent.state is DeliveryState.SENT and resent.external_id != earlier.sid
    assert await delivered(sms, session, message) == resent
    assert len(sms.sandbox.messages) == 2


async def test_hook_deliver_reply_failures(sms: Rig) -> None:
    # A provider refusal is a final FAILED, remembered without sending again.
    sms.sandbox.fail_next(400)
    session, message = reply("m6", "Hello")
    failed = await delivered(sms, session, message)
    assert failed.state is DeliveryState.FAILED and "HTTP 400" in failed.detail
    assert await delivered(sms, session, message) == failed
    assert sms.sandbox.messages == []

    # A transient failure propagates for the outbox, with the provider's Retry-After; the
    # retry sends once.
    sms.sandbox.fail_next(429, retry_after=120)
    session, message = reply("m7", "Hello again")
    with pytest.raises(TransientError) as caught:
        await sms.plugin.deliver_reply(session, message)
    assert caught.value.retry_after == 120
    assert TOKEN not in str(caught.value)
    retried = await delivered(sms, session, message)
    assert retried.state is DeliveryState.SENT and len(sms.sandbox.messages) == 1


async def test_hook_deliver_reply_refusals_and_recipient(sms: Rig) -> None:
    session, message = reply("m8", "x" * 1531)  # 11 GSM-7 parts: over the default 10
    refused = await sms.plugin.deliver_reply(session, message)
    assert refused.state is DeliveryState.REFUSED
    assert "11 SMS segments (GSM-7)" in refused.detail and "limit of 10" in refused.detail
    session, message = reply("m9", "   ")
    assert (await sms.plugin.deliver_reply(session, message)).state is DeliveryState.REFUSED
    # The core may address a contact known by e-mail too at that address: SMS uses the phone.
    session, message = reply("m10", "By text", recipient="ann@example.com")
    assert (await sms.plugin.deliver_reply(session, message)).state is DeliveryState.SENT
    await sms.bridge.store.put_state("sms", f"optout:{ANN}", {"at": "now"})
    session, message = reply("m11", "After STOP")
    opted_out = await sms.plugin.deliver_reply(session, message)
    assert opted_out.state is DeliveryState.REFUSED and "STOP" in opted_out.detail
    assert [m["body"] for m in sms.sandbox.messages] == ["By text"]


async def test_hook_deliver_reply_21610_marks_the_number_opted_out(sms: Rig) -> None:
    # The customer opted out with the provider (its own STOP handling, or the carrier's)
    # and the bridge never heard of it: the provider refuses the reply with 21610.
    sms.sandbox.opted_out.add((OUR, ANN))
    session, message = reply("m12", "Your refund is on its way.")
    refused = await delivered(sms, session, message)
    assert refused.state is DeliveryState.REFUSED
    assert "opted out of SMS (STOP)" in refused.detail and "21610" in refused.detail
    assert TOKEN not in refused.detail
    assert (await sms.bridge.store.get_state("sms", f"optout:{ANN}"))["provider_code"] == 21610
    # Asked again (an outbox retry), the same answer; a later reply is refused before sending.
    assert await delivered(sms, session, message) == refused
    sms.sandbox.opted_out.clear()
    session, later = reply("m13", "Anything else?")
    assert (await sms.plugin.deliver_reply(session, later)).state is DeliveryState.REFUSED
    assert sms.sandbox.messages == []


async def test_hook_ingest_a_keyword_the_provider_answered_is_not_answered_again(
    sms: Rig,
) -> None:
    # Advanced Opt-Out: the provider says which keyword it took, custom ones included.
    inbound = await sms.plugin.ingest(raw(Body="Arrêt", OptOutType="STOP"))
    assert inbound.message is None
    assert inbound.dropped == "opt-out keyword ARRÊT (answered by the provider)"
    assert await sms.bridge.store.get_state("sms", f"optout:{ANN}") is not None
    inbound = await sms.plugin.ingest(raw(MessageSid="SM" + "b" * 32, Body="start",
                                          OptOutType="START"))
    assert inbound.dropped == "opt-in keyword START (answered by the provider)"
    assert await sms.bridge.store.get_state("sms", f"optout:{ANN}") is None
    assert sms.sandbox.messages == []


async def test_hook_ingest_stop_the_provider_already_blocks_is_left_to_it(
    sms: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    # Twilio's default opt-out handling, without OptOutType in the webhook: it blocked the
    # number and confirmed; our confirmation is refused with 21610, which is no failure.
    sms.sandbox.opted_out.add((OUR, ANN))
    stop = raw(Body="STOP")
    assert (await sms.plugin.ingest(stop)).dropped == "opt-out keyword STOP"
    assert (await sms.plugin.ingest(stop)).dropped == "opt-out keyword STOP"  # a retry
    claim = await sms.bridge.store.get_state("sms", f"keyword:{'SM' + 'a' * 32}")
    assert claim["provider_answered"] is True
    assert sms.sandbox.messages == []
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


async def test_hook_ingest_a_keyword_answer_is_one_request_and_a_retried_webhook_answers(
    sms: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    # The customer's webhook is not held while a provider outage is retried: one request,
    # the failure logged, and nothing claimed, so the provider's retry of the webhook answers.
    sms.sandbox.fail_next(503, times=3)
    help_ = raw(Body="HELP")
    assert (await sms.plugin.ingest(help_)).dropped == "help keyword HELP"
    assert len(sms.sandbox.failures) == 2 and sms.sandbox.messages == []
    assert "keyword answer" in caplog.text and "503" in caplog.text
    sms.sandbox.failures.clear()
    assert (await sms.plugin.ingest(help_)).dropped == "help keyword HELP"
    assert (await sms.plugin.ingest(help_)).dropped == "help keyword HELP"
    assert [m["to"] for m in sms.sandbox.messages] == [ANN]


async def test_hook_ingest_answer_keywords_off_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async for r in rig(tmp_path, monkeypatch, answer_keywords=False):
        assert (await r.plugin.ingest(raw(Body="STOP"))).dropped == "opt-out keyword STOP"
        assert (await r.plugin.ingest(raw(MessageSid="SM" + "c" * 32, Body="HELP"))).dropped
        assert await r.bridge.store.get_state("sms", f"optout:{ANN}") is not None
        assert r.sandbox.messages == []


# -- check, services, commands -----------------------------------------------------------


class NoBridge:
    """Just enough of a runner for a context whose plugin only checks its provider."""

    registry = store = None
    blob_dir = Path("/nonexistent")


def twilio_plugin(base_url: str, token: str) -> SmsPlugin:
    plugin = SmsPlugin()
    settings = SmsSettings(provider="twilio", base_url=base_url, account_sid="AC" + "7" * 32,
                           auth_token=Secret(token), numbers=[OUR])
    plugin.configure(PluginContext(NoBridge(), "sms", settings))  # type: ignore[arg-type]
    return plugin


async def test_hook_check_asks_the_provider(serve) -> None:
    state = SandboxState(account_sid="AC" + "7" * 32, auth_token=Secret("right-token"))
    with serve(create_sandbox_app(state)) as base:
        good = await twilio_plugin(base, "right-token").check()
        bad = await twilio_plugin(base, "wrong-token").check()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    gone = await twilio_plugin(f"http://127.0.0.1:{closed}", "right-token").check()
    assert (good.plugin, good.ok, good.detail) == ("sms", True, "Active")
    assert not bad.ok and "HTTP 401" in bad.detail and "wrong-token" not in bad.detail
    assert not gone.ok and "cannot reach" in gone.detail


async def test_hook_check_sandbox_and_services(sms: Rig) -> None:
    assert (await sms.plugin.check()).ok
    assert sms.plugin.sandbox_url.startswith("http://127.0.0.1:")
    assert sms.sandbox.webhook_url == sms.bridge.public_url + "/webhooks/sms/inbound"
    plugin = twilio_plugin("http://127.0.0.1:9", "t")
    [service] = plugin.services()
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        assert plugin.provider().base_url == "http://127.0.0.1:9"
        tg.cancel_scope.cancel()
    assert plugin._provider is None


def test_hook_cli_commands_are_the_sms_commands() -> None:
    paths = [c.path for c in SmsPlugin().cli_commands()]
    assert paths == [("sms", "segments"), ("sandbox", "sms")]


# -- settings ---------------------------------------------------------------------------


def settings(tmp_path: Path, **table: object) -> SmsSettings:
    path = tmp_path / "casebridge.toml"
    path.write_text(tomli_w.dumps({"plugins": {"sms": table}}))
    return build(SmsSettings, table, path=path, where="plugins.sms")


def test_settings_defaults_normalization_and_errors(tmp_path: Path) -> None:
    built = settings(tmp_path, provider="sandbox", numbers=["(500) 555-0006", "+15005550006"])
    assert built.numbers == [OUR] and built.max_segments == 10 and not built.download_media
    assert built.token.reveal() and built.sid.startswith("AC")
    cases = [
        ({"provider": "twilio", "numbers": [OUR], "auth_token": "s3cret"}, "account_sid"),
        ({"provider": "twilio", "numbers": [OUR], "account_sid": "AC1"}, "auth_token"),
        ({"provider": "sandbox"}, "numbers"),
        ({"provider": "sandbox", "numbers": ["12"]}, "'12'"),
        ({"provider": "sms-o-matic", "numbers": [OUR]}, "provider"),
        ({"provider": "sandbox", "numbers": [OUR], "max_segments": 0}, "max_segments"),
        ({"provider": "sandbox", "numbers": [OUR], "public_base_url": "ftp://x"},
         "public_base_url"),
        ({"provider": "sandbox", "numbers": [OUR], "help_text": " "}, "help_text"),
    ]
    for table, named in cases:
        with pytest.raises(ConfigError, match=named) as caught:
            settings(tmp_path, **table)
        assert "[plugins.sms]" in str(caught.value) and "s3cret" not in str(caught.value)


# -- pure helpers -----------------------------------------------------------------------

statuses = st.lists(st.sampled_from(sorted(STATUS_RANK)), max_size=12)


@given(statuses)
def test_advance_status_never_goes_back_and_keeps_the_first_final(reports: list[str]) -> None:
    record = None
    for index, status in enumerate(reports):
        new = advance_status(record, status, at=str(index))
        if new is None:
            assert status in record["seen"]
            continue
        if record is not None:
            assert STATUS_RANK[new["status"]] >= STATUS_RANK[record["status"]]
        record = new
    if not reports:
        return
    distinct = list(dict.fromkeys(reports))
    assert record["seen"] == distinct
    top = max(STATUS_RANK[s] for s in distinct)
    assert record["status"] == next(s for s in distinct if STATUS_RANK[s] == top)


def test_advance_status_refuses_an_unknown_status() -> None:
    with pytest.raises(ValueError, match="unknown MessageStatus 'lost'"):
        advance_status(None, "lost", at="t")


@given(st.sampled_from(["STOP", "start", "Help", "unsubscribe"]),
       st.text(alphabet=" .!?\t\u200b", max_size=4), st.text(alphabet=" .!?", max_size=4))
def test_keyword_word_is_the_word_without_decoration(word: str, before: str, after: str) -> None:
    assert keyword_word(before + word + after) == word.upper()


@given(st.lists(st.tuples(st.text(string.ascii_letters, min_size=1),
                          st.sampled_from(["image/jpeg", "video/mp4", ""])), max_size=10))
def test_media_fields_reads_back_every_medium(media: list[tuple[str, str]]) -> None:
    fields = {"NumMedia": str(len(media))}
    for index, (url, content_type) in enumerate(media):
        fields[f"MediaUrl{index}"] = f"https://m.test/{url}"
        fields[f"MediaContentType{index}"] = content_type
    assert media_fields(fields) == [
        (f"https://m.test/{url}", content_type or "application/octet-stream")
        for url, content_type in media
    ]


@given(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=6))
def test_form_fields_round_trips_an_encoded_form(items: list[tuple[str, str]]) -> None:
    from urllib.parse import urlencode

    assert form_fields(urlencode(items).encode()) == items


def test_our_channel_matches_by_number_or_messaging_service() -> None:
    built = SmsSettings(provider="sandbox", numbers=[OUR], messaging_service_sid="MG9")
    assert our_channel(built, {"To": OUR}) is None
    assert our_channel(built, {"To": "(500) 555-0006"}) is None
    assert our_channel(built, {"To": "+14155550123", "MessagingServiceSid": "MG9"}) is None
    assert "not one of our numbers" in our_channel(built, {"To": "+14155550123"})
    assert "MG1" in our_channel(built, {"To": "+14155550123", "MessagingServiceSid": "MG1"})
    assert "no To" in our_channel(built, {})
