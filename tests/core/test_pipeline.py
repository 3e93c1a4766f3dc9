"""The whole pipeline in-process: a loopback channel, a scripted assistant, and the example
JSON-lines CRM installed by its entry point — the same path a third-party plugin takes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest
from casebridge.bridge import Bridge
from casebridge.jobs import HandoffJob
from casebridge.model import Author, SessionStatus
from casebridge.web import create_app
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
from support.plugins import LoopChannel, ScriptedAssistant


@pytest.fixture(params=["sqlite", "postgres"])
async def world(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    install_jsonl(monkeypatch, tmp_path)
    store = {}
    if request.param == "postgres":  # the same pipeline on the PostgreSQL store
        store = {"url": request.getfixturevalue("postgres_server").new_database("pipeline")}
    path = write_config(tmp_path, bridge={"plugins": ["assistant"]}, store=store)
    loop, assistant = LoopChannel(), ScriptedAssistant()
    bridge = Bridge.from_config(path, plugins={"loop": loop, "assistant": assistant})
    assert type(bridge.store).__name__ == {"sqlite": "SqliteStore", "postgres": "PgStore"}[
        request.param]
    await bridge.open()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(bridge)),
                               base_url="http://bridge")
    try:
        yield bridge, loop, client
    finally:
        await client.aclose()
        await bridge.close()


async def webhook(client: httpx.AsyncClient, body: dict, token: str = HOOK_TOKEN):
    return await client.post(f"/webhooks/jsonl/{token}", content=json.dumps(body))


async def test_a_conversation_from_first_message_to_closed_case(world) -> None:
    bridge, loop, client = world

    # Two assistant turns: the customer gets answers, nothing reaches the CRM.
    await bridge.receive(inbound("My printer prints blank pages.", msg_id="m1"))
    await settle(bridge)
    session = await only_session(bridge)
    assert session.status is SessionStatus.ASSISTANT
    assert [m.text for m in loop.sent] == ["Answer 1 for loop"]
    assert jsonl_records(bridge, "case") == []

    # The assistant hands off: one case, one activity per message, in order.
    await bridge.receive(inbound("Then I want a refund.", msg_id="m2"))
    await settle(bridge)
    session = await only_session(bridge)
    assert session.status is SessionStatus.HANDED_OFF and session.case is not None
    [case] = jsonl_records(bridge, "case")
    assert case["id"] == session.case.case_id
    assert "Ann Example" in case["description"] and "refunds need a person" in case["description"]
    assert "My printer prints blank pages." in case["description"]
    activities = jsonl_records(bridge, "activity")
    assert [a["author"] for a in activities] == ["customer", "assistant", "customer"]
    assert "My printer prints blank pages." in activities[0]["body"]
    assert activities[0]["first"] and f"/sessions/{session.id}?exp=" in activities[0]["body"]
    assert not any(a["first"] for a in activities[1:])

    # After handoff the assistant is quiet and every new message is appended at once.
    await bridge.receive(inbound("Any news?", msg_id="m3"))
    await settle(bridge)
    assert len(loop.sent) == 1
    assert [a["body"] for a in jsonl_records(bridge, "activity")][3].count("Any news?") == 1

    # A rep replies in the CRM: delivered on the channel, stored as an agent message,
    # and not written back to the case it came from.
    reply = {"event_type": "new_activity", "caseId": case["id"], "activityId": "rep-1",
             "text": "We have sent a replacement.", "author": "Rita Rep"}
    assert (await webhook(client, reply)).status_code == 200
    assert (await webhook(client, reply)).status_code == 200  # Creatio may call twice
    await settle(bridge)
    assert [m.text for m in loop.sent][-1] == "We have sent a replacement."
    assert sum(m.author is Author.AGENT for m in loop.sent) == 1
    transcript = await bridge.store.transcript(session.id)
    assert transcript[-1].author is Author.AGENT and transcript[-1].sender_name == "Rita Rep"
    assert len(jsonl_records(bridge, "activity")) == 4

    # The case is closed: the next message starts a new session and a new case.
    closed = {"event_type": "case_closed", "caseId": case["id"]}
    assert (await webhook(client, closed)).status_code == 200
    await settle(bridge)
    assert (await bridge.store.get_session(session.id)).status is SessionStatus.CLOSED
    await bridge.receive(inbound("It broke again, I need a refund.", msg_id="m4"))
    await settle(bridge)
    new = await only_session(bridge, SessionStatus.HANDED_OFF)
    assert new.id != session.id
    cases = jsonl_records(bridge, "case")
    assert len(cases) == 2 and new.case.case_id == cases[1]["id"] != case["id"]


async def test_hook_find_open_case_appends_a_returning_contact(world) -> None:
    bridge, _, client = world
    await bridge.receive(inbound("refund please", msg_id="a1"))
    await settle(bridge)
    first = await only_session(bridge)
    # Same customer, a new conversation (another of our addresses): the open case is reused.
    await bridge.receive(inbound("and a refund for the second order", msg_id="a2", to="desk2"))
    await settle(bridge)
    sessions = await bridge.store.list_sessions()
    assert len(sessions) == 2
    assert {s.case.case_id for s in sessions} == {first.case.case_id}
    assert len(jsonl_records(bridge, "case")) == 1
    assert len(jsonl_records(bridge, "activity")) == 2
    # Closing the case closes every session appended to it.
    await webhook(client, {"event_type": "case_closed", "caseId": first.case.case_id})
    await settle(bridge)
    assert len(await bridge.store.list_sessions(status=SessionStatus.CLOSED)) == 2


async def test_hook_ingest_duplicates_and_drops_are_recorded_once(world) -> None:
    bridge, loop, _ = world
    first = await bridge.receive(inbound("hello", msg_id="d1"))
    again = await bridge.receive(inbound("hello", msg_id="d1"))
    assert first.message_id and not first.duplicate and again.duplicate
    dropped = await bridge.receive(inbound("STOP", msg_id="d2"))
    assert dropped.dropped == "opt-out keyword"
    await settle(bridge)
    assert len(await bridge.store.transcript((await only_session(bridge)).id)) == 2
    assert [d.reason for d in await bridge.store.list_dropped(10)] == ["opt-out keyword"]
    assert loop.calls.count("ingest") == 3


async def test_hook_deliver_reply_refusal_is_recorded_on_the_case(world) -> None:
    bridge, loop, client = world
    await bridge.receive(inbound("refund", msg_id="r1", sender="bob@example.com"))
    await settle(bridge)
    session = await only_session(bridge)
    loop.refused.add("bob@example.com")
    reply = {"event_type": "new_activity", "caseId": session.case.case_id,
             "activityId": "rep-9", "text": "Hello Bob"}
    await webhook(client, reply)
    await settle(bridge)
    assert loop.sent == []
    activities = jsonl_records(bridge, "activity")
    assert "not delivered" in activities[-1]["body"] and "opted out" in activities[-1]["body"]
    assert activities[-1]["author"] == "system"


async def test_hook_read_webhook_refuses_a_wrong_token(world) -> None:
    bridge, _, client = world
    response = await webhook(client, {"event_type": "case_closed", "caseId": "x"}, "guess")
    assert response.status_code == 403
    assert HOOK_TOKEN not in response.text
    assert await bridge.store.job_counts() == {} or not any(
        (await bridge.store.job_counts()).values())


async def test_manual_handoff_through_the_api_is_token_protected(world) -> None:
    bridge, _, client = world
    await bridge.receive(inbound("my order is late", msg_id="h1"))
    await settle(bridge)
    session = await only_session(bridge)
    url = f"/api/sessions/{session.id}/handoff"
    assert (await client.post(url)).status_code == 401
    assert (await client.post(url, headers={"Authorization": "Bearer nope"})).status_code == 401
    missing = await client.post("/api/sessions/nope/handoff",
                                headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert missing.status_code == 404
    ok = await client.post(url, json={"reason": "VIP customer"},
                           headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert ok.status_code == 202
    await settle(bridge)
    [case] = jsonl_records(bridge, "case")
    assert "VIP customer" in case["description"]
    assert (await bridge.store.get_session(session.id)).status is SessionStatus.HANDED_OFF


async def test_session_page_needs_a_valid_signed_link(world) -> None:
    bridge, _, client = world
    await bridge.receive(inbound("<script>alert(1)</script> help", msg_id="p1"))
    await settle(bridge)
    session = await only_session(bridge)
    link = bridge.session_link(session.id)
    page = await client.get(link.removeprefix(bridge.public_url))
    assert page.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt; help" in page.text
    assert "<script>alert(1)" not in page.text
    forged = link.removeprefix(bridge.public_url).replace("sig=", "sig=A")
    assert (await client.get(forged)).status_code == 403
    assert (await client.get(f"/sessions/{session.id}")).status_code == 403


async def test_health_readiness_and_metrics(world) -> None:
    bridge, _, client = world
    await bridge.receive(inbound("hi", msg_id="x1"))
    await settle(bridge)
    assert (await client.get("/healthz")).text == "ok"
    ready = (await client.get("/readyz")).json()
    assert ready["ready"] and "jsonl" in ready["plugins"]
    metrics = (await client.get("/metrics")).text
    assert 'casebridge_messages_in_total{channel="loop"} 1.0' in metrics


async def test_hook_attach_file_uploads_each_stored_attachment_once(world) -> None:
    bridge, _, _ = world
    await bridge.receive(inbound("see the log", msg_id="f1", attachment="line 1\nline 2\n",
                                 attachment_name="printer.log"))
    await bridge.receive(inbound("and I want a refund", msg_id="f2"))
    await settle(bridge)
    [case] = jsonl_records(bridge, "case")
    [file] = jsonl_records(bridge, "file")
    assert file["case_id"] == case["id"] and file["name"] == "printer.log"
    assert file["size"] == len("line 1\nline 2\n")
    assert file["sha256"] == hashlib.sha256(b"line 1\nline 2\n").hexdigest()
    # The activity references it; a new sync (another message) uploads nothing again.
    [first, *_] = jsonl_records(bridge, "activity")
    assert "printer.log" in first["body"]
    await bridge.receive(inbound("any news?", msg_id="f3"))
    await settle(bridge)
    assert len(jsonl_records(bridge, "file")) == 1


async def test_close_through_the_api_closes_the_session(world) -> None:
    bridge, _, client = world
    await bridge.receive(inbound("thanks, all good", msg_id="c1"))
    await settle(bridge)
    session = await only_session(bridge)
    url = f"/api/sessions/{session.id}/close"
    assert (await client.post(url)).status_code == 401
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    assert (await client.post(url, headers=auth)).status_code == 202
    await settle(bridge)
    assert (await bridge.store.get_session(session.id)).status is SessionStatus.CLOSED
    assert (await client.post(url, headers=auth)).status_code == 409


async def test_webhook_events_carry_the_calls_trace_id(world) -> None:
    # Both kinds of CRM event become jobs that log under the webhook call's trace id.
    bridge, _, client = world
    await bridge.receive(inbound("refund please", msg_id="t1"))
    await settle(bridge)
    session = await only_session(bridge)
    case_id = session.case.case_id
    await webhook(client, {"event_type": "new_activity", "caseId": case_id,
                           "activityId": "rep-t", "text": "On its way."})
    await webhook(client, {"event_type": "case_closed", "caseId": case_id})
    jobs = await bridge.store.list_jobs(limit=100)
    events = [j for j in jobs if j.kind in ("reply", "closed")]
    assert sorted(j.kind for j in events) == ["closed", "reply"]
    assert all(len(j.trace_id) >= 16 for j in events), [(j.kind, j.trace_id) for j in events]
    assert events[0].trace_id != events[1].trace_id  # two calls, two traces


async def test_an_inbound_refused_as_unparseable_is_recorded_as_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever the channel, an inbound its ingest refuses for good is listed with the
    # other dropped inbounds, and the transport still gets the error to refuse it.
    from casebridge import hookimpl
    from casebridge.errors import PermanentError

    class Refusing(LoopChannel):
        @hookimpl
        async def ingest(self, raw):
            raise PermanentError("no sender in the message")

    install_jsonl(monkeypatch, tmp_path)
    bridge = Bridge.from_config(write_config(tmp_path), plugins={"loop": Refusing()})
    await bridge.open()
    try:
        with pytest.raises(PermanentError, match="no sender"):
            await bridge.receive(inbound("hello", msg_id="bad-1"))
        with pytest.raises(PermanentError):
            await bridge.receive(inbound("hello", msg_id="bad-1"))  # resent: listed once
        [dropped] = await bridge.store.list_dropped(10)
        assert dropped.channel == "loop" and dropped.reason == "refused: no sender in the message"
        assert await bridge.store.list_sessions() == []
    finally:
        await bridge.close()


async def test_deeply_nested_json_is_a_400_on_the_webhook_and_the_api(world) -> None:
    bridge, _, client = world
    await bridge.receive(inbound("my parcel is lost", msg_id="deep1"))
    await settle(bridge)
    session = await only_session(bridge)
    deep = b"[" * 100_000
    hooked = await client.post(f"/webhooks/jsonl/{HOOK_TOKEN}", content=deep)
    assert hooked.status_code == 400, hooked.text
    api = await client.post(f"/api/sessions/{session.id}/handoff", content=deep,
                            headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert api.status_code == 400, api.text
    assert "nested deeper than 64 levels" in api.json()["error"]
    # Nothing was queued; the same calls with sane bodies still work.
    assert (await bridge.store.get_session(session.id)).status is not SessionStatus.HANDED_OFF
    ok = await client.post(f"/api/sessions/{session.id}/handoff", json={"reason": "deep"},
                           headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert ok.status_code == 202


async def test_handoff_latency_runs_from_the_decision_to_the_activities(world) -> None:
    # The time the session spent with the assistant before the decision is not latency.
    import anyio
    from casebridge.model import utcnow

    bridge, _, _ = world
    await bridge.receive(inbound("My printer prints blank pages.", msg_id="lat1"))
    await settle(bridge)
    session = await only_session(bridge)
    await anyio.sleep(2.0)
    decided = utcnow()
    await bridge.enqueue(HandoffJob(session.id, "t", "t", "t").to_new_job())
    await settle(bridge)
    done = utcnow()
    registry = bridge.registry
    assert registry.get_sample_value("casebridge_handoff_latency_seconds_count") == 1
    latency = registry.get_sample_value("casebridge_handoff_latency_seconds_sum")
    assert 0 <= latency <= (done - decided).total_seconds() + 0.05
    assert jsonl_records(bridge, "activity")  # measured once the activities were written
