"""``receive_later``: a raw inbound made durable at once and parsed by an ``ingest`` job,
ending exactly as ``receive`` does (one message and its inbound job, or one drop), on both
store backends."""

from __future__ import annotations

from pathlib import Path

import pytest
from casebridge.bridge import Bridge
from casebridge.errors import PermanentError
from casebridge.jobs import IngestJob, Run
from casebridge.model import RawInbound, SessionStatus
from support.bridges import inbound, install_jsonl, only_session, settle, write_config
from support.plugins import LoopChannel

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgres"])
async def world(request: pytest.FixtureRequest, tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch):
    install_jsonl(monkeypatch, tmp_path)
    store = {}
    if request.param == "postgres":
        store = {"url": request.getfixturevalue("postgres_server").new_database("later")}
    loop = LoopChannel()
    bridge = Bridge.from_config(write_config(tmp_path, store=store), plugins={"loop": loop})
    await bridge.open()
    try:
        yield bridge, loop
    finally:
        await bridge.close()


async def _ingest_jobs(bridge: Bridge) -> list[IngestJob]:
    return [IngestJob.from_job(j) for j in await bridge.store.list_jobs()
            if j.kind == "ingest"]


async def test_the_raw_inbound_is_durable_at_once_and_parsed_by_the_outbox(world) -> None:
    bridge, loop = world
    await bridge.receive_later(inbound("My printer prints blank pages.", msg_id="m1"))
    # Nothing parsed yet: the raw inbound and its job are what the commit holds.
    assert loop.calls == []
    assert await bridge.store.count_raw() == 1
    [job] = await _ingest_jobs(bridge)
    assert (job.channel, job.sender) == ("loop", "ann@example.com")

    await settle(bridge)
    assert loop.calls == ["ingest"]
    assert await bridge.store.count_raw() == 0
    session = await only_session(bridge)
    assert session.status is SessionStatus.ASSISTANT
    [message] = await bridge.store.transcript(session.id)
    assert message.text == "My printer prints blank pages."
    assert message.trace_id == job.trace_id  # one trace from the 250 to the session


async def test_one_senders_messages_are_threaded_in_the_order_they_came(world) -> None:
    bridge, _ = world
    for n in range(5):
        await bridge.receive_later(inbound(f"part {n}", msg_id=f"m{n}"))
    await settle(bridge)
    session = await only_session(bridge)
    assert [m.text for m in await bridge.store.transcript(session.id)] == [
        f"part {n}" for n in range(5)]


async def test_a_dropped_inbound_is_recorded_once_and_let_go(world) -> None:
    bridge, _ = world
    await bridge.receive_later(inbound("STOP", msg_id="m1"))
    await settle(bridge)
    [dropped] = await bridge.store.list_dropped()
    assert (dropped.channel, dropped.external_id, dropped.reason) == (
        "loop", "m1", "opt-out keyword")
    assert await bridge.store.count_raw() == 0
    assert await bridge.store.list_sessions() == []


async def test_an_unparseable_inbound_is_a_drop_not_a_retry(
    world, monkeypatch: pytest.MonkeyPatch
) -> None:
    bridge, _ = world

    async def refuse(channel: str, raw: RawInbound):
        raise PermanentError("no such format")

    monkeypatch.setattr(bridge.hooks, "ingest", refuse)
    await bridge.receive_later(inbound("???", msg_id="m1"))
    await settle(bridge)
    [dropped] = await bridge.store.list_dropped()
    assert dropped.reason == "refused: no such format"
    assert await bridge.store.count_raw() == 0
    assert (await bridge.store.job_counts()).get("dead", 0) == 0


async def test_a_failing_parse_is_retried_and_the_raw_inbound_kept_meanwhile(
    world, monkeypatch: pytest.MonkeyPatch
) -> None:
    bridge, _ = world
    real = bridge.hooks.ingest
    broken = [True]

    async def flaky(channel: str, raw: RawInbound):
        if broken[0]:
            raise OSError("blob folder full")
        return await real(channel, raw)

    monkeypatch.setattr(bridge.hooks, "ingest", flaky)
    await bridge.receive_later(inbound("hello", msg_id="m1"))
    await bridge.outbox.drain(timeout=10)
    assert await bridge.store.count_raw() == 1  # the failed attempts lost nothing
    [job] = await bridge.store.list_jobs()
    assert job.state in ("pending", "dead") and "blob folder full" in job.last_error
    broken[0] = False
    await bridge.store.replay_dead()  # had it run out of attempts meanwhile
    await settle(bridge)
    assert await bridge.store.count_raw() == 0
    assert len(await bridge.store.transcript((await only_session(bridge)).id)) == 1


async def test_a_rerun_of_the_ingest_job_writes_nothing_twice(world) -> None:
    bridge, loop = world
    raw = inbound("hello", msg_id="m1")
    await bridge.receive(raw)  # the same message already came another way
    await bridge.receive_later(raw)
    [job] = await _ingest_jobs(bridge)
    receiving = bridge.pipeline.receiving
    run = Run(1, None, (await bridge.store.list_jobs())[0].created_at)
    assert await receiving.on_ingest(job, run) == []  # a duplicate: the raw copy goes
    assert await bridge.store.count_raw() == 0
    assert await receiving.on_ingest(job, run) == []  # a re-run finds nothing to do
    assert loop.calls == ["ingest", "ingest"]
    inbound_jobs = [j for j in await bridge.store.list_jobs() if j.kind == "inbound"]
    assert len(inbound_jobs) == 1


async def test_an_empty_raw_inbound_is_refused_before_anything_is_kept(world) -> None:
    bridge, _ = world
    with pytest.raises(PermanentError, match="empty loop inbound"):
        await bridge.receive_later(RawInbound(channel="loop"))
    assert await bridge.store.count_raw() == 0
    assert await bridge.store.list_jobs() == []
