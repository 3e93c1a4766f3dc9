"""Every reply's delivery state (queued, sent, delivered, failed, refused) with its reason: in
the store, on the session page, in the JSON API and in ``sessions show``; a reply that fails
for good is written to the case."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from casebridge import deliveries, hookimpl
from casebridge.bridge import Bridge
from casebridge.deliveries import DeliveryRecord, ReplyState, advance, describe
from casebridge.errors import TransientError
from casebridge.jobs import Run
from casebridge.links import sign_session_link
from casebridge.model import Author, Delivery, DeliveryState, Message, utcnow
from casebridge.replies import outbound_message
from casebridge.web import create_app
from hypothesis import given, settings
from hypothesis import strategies as st
from support.bridges import (
    API_TOKEN,
    HOOK_TOKEN,
    inbound,
    install_jsonl,
    jsonl_records,
    only_session,
    settle,
    write_config,
)
from support.plugins import LoopChannel


class FlakyChannel(LoopChannel):
    """A loop channel whose sends fail with a transient error ``failures`` times first."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    @hookimpl
    async def deliver_reply(self, message: Message) -> Delivery:
        if self.failures > 0:
            self.failures -= 1
            raise TransientError("the provider is down (503)")
        return await super().deliver_reply(message)


async def open_world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loop: LoopChannel, max_attempts: int = 3
) -> tuple[Bridge, httpx.AsyncClient]:
    install_jsonl(monkeypatch, tmp_path)
    path = write_config(tmp_path, bridge={}, outbox={"max_attempts": max_attempts})
    bridge = Bridge.from_config(path, plugins={"loop": loop})
    await bridge.open()
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(bridge)), base_url="http://bridge"
    )
    return bridge, client


async def handed_off_reply(
    bridge: Bridge, client: httpx.AsyncClient, sender: str, activity: str
) -> None:
    await bridge.receive(inbound("refund please", msg_id=f"in-{activity}", sender=sender))
    await settle(bridge)
    await client.post(
        f"/api/sessions/{(await only_session(bridge)).id}/handoff",
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    await settle(bridge)
    session = await only_session(bridge)
    body = {
        "event_type": "new_activity",
        "caseId": session.case.case_id,
        "activityId": activity,
        "text": "Hello from the desk",
    }
    answer = await client.post(f"/webhooks/jsonl/{HOOK_TOKEN}", content=json.dumps(body))
    assert answer.status_code == 200
    await settle(bridge)


async def api_messages(client: httpx.AsyncClient, session_id: str) -> list[dict]:
    answer = await client.get(
        f"/api/sessions/{session_id}", headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    assert answer.status_code == 200
    return answer.json()["messages"]


async def session_page(bridge: Bridge, client: httpx.AsyncClient, session_id: str) -> str:
    link = sign_session_link(
        "http://bridge",
        session_id,
        bridge.link_secret,
        expires_at=utcnow().replace(year=utcnow().year + 1),
    )
    answer = await client.get(link.removeprefix("http://bridge"))
    assert answer.status_code == 200
    return answer.text


async def test_a_sent_reply_shows_sent_everywhere_and_later_delivered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = LoopChannel()
    bridge, client = await open_world(tmp_path, monkeypatch, loop)
    try:
        await handed_off_reply(bridge, client, "ann@example.com", "rep-1")
        session = await only_session(bridge)
        [reply] = [m for m in await api_messages(client, session.id) if m["author"] == "agent"]
        assert reply["delivery"]["state"] == "sent"
        assert reply["delivery"]["external_id"].startswith("loop-")
        customer = next(
            m for m in await api_messages(client, session.id) if m["author"] == "customer"
        )
        assert customer["delivery"] is None
        assert '<span class="delivery sent"' in await session_page(bridge, client, session.id)
        # The channel learns later that it arrived.
        await bridge.report_delivery(reply["id"], "delivered")
        [reply] = [m for m in await api_messages(client, session.id) if m["author"] == "agent"]
        assert reply["delivery"]["state"] == "delivered"
        # ... and then that it bounced: failed, and the rep reads it on the case.
        await bridge.report_delivery(reply["id"], "failed", "the mailbox does not exist")
        await settle(bridge)
        record = await deliveries.get(bridge.store, reply["id"])
        assert record is not None and record.state is ReplyState.FAILED
        last = jsonl_records(bridge, "activity")[-1]
        assert last["author"] == "system" and "the mailbox does not exist" in last["body"]
        # Reported twice, written once.
        await bridge.report_delivery(reply["id"], "failed", "the mailbox does not exist")
        await settle(bridge)
        assert (
            sum("mailbox does not exist" in a["body"] for a in jsonl_records(bridge, "activity"))
            == 1
        )
    finally:
        await client.aclose()
        await bridge.close()


async def test_a_reply_that_keeps_failing_is_failed_and_written_to_the_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = FlakyChannel(failures=100)
    bridge, client = await open_world(tmp_path, monkeypatch, loop, max_attempts=3)
    try:
        await handed_off_reply(bridge, client, "bob@example.com", "rep-2")
        session = await only_session(bridge)
        [reply] = [m for m in await api_messages(client, session.id) if m["author"] == "agent"]
        assert reply["delivery"]["state"] == "failed"
        assert "gave up after 3 attempts" in reply["delivery"]["detail"]
        assert "the provider is down (503)" in reply["delivery"]["detail"]
        # Not a dead job: the failure is the outcome, recorded on the case.
        assert (await bridge.store.job_counts()).get("dead", 0) == 0
        last = jsonl_records(bridge, "activity")[-1]
        assert last["author"] == "system" and "not delivered" in last["body"]
        assert "gave up after 3 attempts" in last["body"]
        page = await session_page(bridge, client, session.id)
        assert '<span class="delivery failed"' in page and "gave up after 3 attempts" in page
    finally:
        await client.aclose()
        await bridge.close()


async def test_a_retried_reply_is_queued_with_the_reason_then_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop = FlakyChannel(failures=1)
    bridge, client = await open_world(tmp_path, monkeypatch, loop, max_attempts=3)
    try:
        await bridge.receive(inbound("refund", msg_id="q1"))
        await settle(bridge)
        session = await only_session(bridge)
        message = outbound_message(
            session, recipient="ann@example.com", message_id="m-q", author=Author.AGENT,
            text="hi",
        )
        replies = bridge.pipeline.replies
        with pytest.raises(TransientError):
            await replies.deliver(session, message, Run(1, None, utcnow()))
        record = await deliveries.get(bridge.store, "m-q")
        assert record is not None and record.state is ReplyState.QUEUED
        assert "attempt 1 failed, will retry" in record.detail and "503" in record.detail
        await replies.deliver(session, message, Run(2, None, utcnow()))
        record = await deliveries.get(bridge.store, "m-q")
        assert record is not None and record.state is ReplyState.SENT
    finally:
        await client.aclose()
        await bridge.close()


async def test_the_session_api_needs_the_token(tmp_path, monkeypatch) -> None:
    bridge, client = await open_world(tmp_path, monkeypatch, LoopChannel())
    try:
        assert (await client.get("/api/sessions/x")).status_code == 401
        answer = await client.get(
            "/api/sessions/x", headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
        assert answer.status_code == 404 and "no session x" in answer.json()["error"]
    finally:
        await client.aclose()
        await bridge.close()


states = st.sampled_from(list(ReplyState))
details = st.text(max_size=40)


def record(state: ReplyState, detail: str = "") -> DeliveryRecord:
    return DeliveryRecord("m", state, detail, "", utcnow())


@settings(deadline=None)  # the machine is shared: no per-example deadline
@given(st.lists(st.tuples(states, details), min_size=1, max_size=12))
def test_advance_never_moves_a_reply_back(reports: list[tuple[ReplyState, str]]) -> None:
    rank = {"queued": 0, "sent": 1, "delivered": 2, "failed": 2, "refused": 2}
    current = None
    for state, detail in reports:
        after = advance(current, record(state, detail))
        if after is None:
            continue
        if current is not None:
            assert rank[after.state] >= rank[current.state]
            if current.state in ("failed", "refused"):
                assert after.state is current.state
        current = after
    assert current is not None


@settings(deadline=None)  # the machine is shared: no per-example deadline
@given(states, details)
def test_advance_is_idempotent(state: ReplyState, detail: str) -> None:
    once = advance(None, record(state, detail))
    assert once is not None and advance(once, record(state, detail)) is None


def test_a_late_bounce_fails_a_delivered_reply() -> None:
    after = advance(record(ReplyState.DELIVERED), record(ReplyState.FAILED, "bounced"))
    assert after is not None and after.state is ReplyState.FAILED and after.detail == "bounced"
    assert advance(record(ReplyState.FAILED, "x"), record(ReplyState.SENT)) is None


@settings(deadline=None)  # the machine is shared: no per-example deadline
@given(states, st.text(max_size=200))
def test_describe_is_one_line_naming_the_state(state: ReplyState, detail: str) -> None:
    line = describe(record(state, detail))
    assert "\n" not in line and "\r" not in line
    assert line.startswith(state.value)
    words = detail.split()
    assert line == (f"{state.value}: {' '.join(words)}" if words else state.value)
    assert describe(None) == "unknown"


def test_delivery_states_cover_what_plugins_return() -> None:
    assert {s.value for s in DeliveryState} <= {s.value for s in ReplyState}


def test_sessions_show_prints_each_replys_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import anyio
    from casebridge import cli

    loop = LoopChannel()
    loop.refused.add("carl@example.com")

    async def prepare() -> str:
        bridge, client = await open_world(tmp_path, monkeypatch, loop)
        try:
            await handed_off_reply(bridge, client, "carl@example.com", "rep-3")
            return (await only_session(bridge)).id
        finally:
            await client.aclose()
            await bridge.close()

    session_id = anyio.run(prepare)
    # The CLI loads plugins from entry points: give it the in-process loop channel too.
    original = Bridge.from_config
    monkeypatch.setattr(
        cli.Bridge, "from_config", lambda path, **kw: original(path, plugins={"loop": loop})
    )
    capsys.readouterr()
    assert (
        cli.main(["sessions", "show", session_id, "--config", str(tmp_path / "casebridge.toml")])
        == 0
    )
    out = capsys.readouterr().out
    assert "Hello from the desk" in out
    assert "[refused: the customer opted out]" in out


class HangingChannel(LoopChannel):
    """A loop channel whose sends never return: the runner 'dies' while sending."""

    @hookimpl
    async def deliver_reply(self, message: Message) -> Delivery:
        import anyio

        await anyio.sleep_forever()
        raise AssertionError("unreachable")


async def test_a_reply_whose_runner_died_on_its_last_attempt_is_failed_on_the_case(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The outbox dead-letters a job whose budget a dead runner spent, without running it
    # again: the reply is then failed, with the reason, and written to the case.
    from datetime import timedelta

    import anyio

    bridge, client = await open_world(tmp_path, monkeypatch, HangingChannel(), max_attempts=1)
    try:
        await bridge.receive(inbound("refund please", msg_id="in-d", sender="dan@example.com"))
        await settle(bridge)
        session = await only_session(bridge)
        await client.post(f"/api/sessions/{session.id}/handoff",
                          headers={"Authorization": f"Bearer {API_TOKEN}"})
        await settle(bridge)
        session = await only_session(bridge)
        body = {"event_type": "new_activity", "caseId": session.case.case_id,
                "activityId": "rep-d", "text": "Hello from the desk"}
        await client.post(f"/webhooks/jsonl/{HOOK_TOKEN}", content=json.dumps(body))
        job = await bridge.store.claim_job("dead-runner/0", timedelta(milliseconds=200),
                                           ["reply"])
        assert job is not None
        with anyio.move_on_after(0.1):  # the runner dies mid-send
            await bridge.pipeline.handlers["reply"](job)
        await anyio.sleep(0.3)  # its lease runs out
        await settle(bridge)
        [dead] = await bridge.store.list_jobs("dead")
        assert dead.id == job.id and "budget of 1 spent" in dead.last_error
        [reply] = [m for m in await api_messages(client, session.id) if m["author"] == "agent"]
        assert reply["delivery"]["state"] == "failed"
        assert "its outbox job died" in reply["delivery"]["detail"]
        last = jsonl_records(bridge, "activity")[-1]
        assert last["author"] == "system" and "not delivered" in last["body"]
    finally:
        await client.aclose()
        await bridge.close()


def test_a_late_send_report_keeps_the_state_and_adds_the_channels_id() -> None:
    # The provider's "delivered" callback arrived before the send's own "sent" report.
    delivered = DeliveryRecord("m1", ReplyState.DELIVERED, updated_at=utcnow())
    late = DeliveryRecord("m1", ReplyState.SENT, external_id="SM123", updated_at=utcnow())
    after = advance(delivered, late)
    assert after is not None
    assert (after.state, after.external_id) == (ReplyState.DELIVERED, "SM123")
    assert advance(after, late) is None
