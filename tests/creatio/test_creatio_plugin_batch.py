"""A handoff costs a constant number of Creatio round trips, whatever the session's length:
the activities go in one ``$batch``."""

from __future__ import annotations

import pytest
from casebridge.model import SessionStatus
from casebridge_creatio.sandbox import seed
from plugin_world import API_TOKEN, creatio_config, running, sandbox_settings
from support.bridges import inbound


async def handoff_requests(tmp_path, messages: int, **creatio) -> tuple[int, dict, list[dict]]:
    path = creatio_config(tmp_path, sandbox_settings("login", **creatio),
                          handoff={"max_customer_turns": 0})
    async with running(path) as world:
        for n in range(messages):
            await world.bridge.receive(inbound(f"message {n}", msg_id=f"b{n}"))
        await world.settle()
        [session] = await world.sessions()
        before = world.sandbox.stats()
        answer = await world.http.post(
            f"{world.bridge_url}/api/sessions/{session.id}/handoff",
            headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert answer.status_code == 202
        await world.settle()
        after = world.sandbox.stats()
        session = await world.bridge.store.get_session(session.id)
        assert session.status is SessionStatus.HANDED_OFF
        activities = world.rows("Activity", CaseId=session.case.case_id)
        by_route = {k: v - before["by_route"].get(k, 0) for k, v in after["by_route"].items()}
        return after["requests"] - before["requests"], by_route, activities


@pytest.mark.parametrize("messages", [2, 12])
async def test_hook_append_activities_creatio_one_batch_per_handoff(tmp_path, messages) -> None:
    # The per-step handoff (atomic_handoff off) writes the activities through this hook.
    total, by_route, activities = await handoff_requests(tmp_path, messages,
                                                         atomic_handoff=False)
    # Every message is one activity, in order, written through $batch, none one by one.
    assert [a["Body"].count(f"message {n}") >= 1 for n, a in enumerate(activities)] == \
        [True] * messages
    assert by_route.get("POST Activity", 0) == 0
    assert by_route.get("POST $batch", 0) == 1, by_route
    assert total <= 12, str({k: v for k, v in by_route.items() if v})


@pytest.mark.parametrize("atomic", [True, False])
async def test_round_trips_do_not_grow_with_the_session(tmp_path, atomic) -> None:
    short, _, _ = await handoff_requests(tmp_path / "short", 2, atomic_handoff=atomic)
    long, _, _ = await handoff_requests(tmp_path / "long", 20, atomic_handoff=atomic)
    assert long == short


async def test_hook_attach_file_creatio_uploads_a_case_file_once(tmp_path) -> None:
    path = creatio_config(tmp_path, sandbox_settings("login"), handoff={"max_customer_turns": 2})
    async with running(path) as world:
        await world.bridge.receive(inbound("here is the log", msg_id="att1",
                                           attachment="error 42\n", attachment_name="err.log"))
        await world.bridge.receive(inbound("still broken", msg_id="att2"))
        await world.settle()
        [session] = await world.sessions()
        files = world.rows("CaseFile", CaseId=session.case.case_id)
        assert [(f["Name"], f["Size"]) for f in files] == [("err.log", len("error 42\n"))]
        rep = await world.rep_session()
        try:
            download = await rep.get(f"/0/rest/FileService/Download/CaseFile/{files[0]['Id']}")
        finally:
            await rep.aclose()
        assert download.status_code == 200 and download.content == b"error 42\n"
        # Another message and its sync do not upload the file again.
        await world.bridge.receive(inbound("hello?", msg_id="att3"))
        await world.settle()
        assert len(world.rows("CaseFile", CaseId=session.case.case_id)) == 1


@pytest.mark.parametrize("resolve", [True, False])
async def test_hook_resolve_case_creatio_on_close(tmp_path, resolve) -> None:
    settings = sandbox_settings("login", resolve_on_close=resolve)
    path = creatio_config(tmp_path, settings, handoff={"max_customer_turns": 1})
    async with running(path) as world:
        await world.bridge.receive(inbound("my order is late", msg_id="r1"))
        await world.settle()
        [session] = await world.sessions()
        answer = await world.http.post(
            f"{world.bridge_url}/api/sessions/{session.id}/close",
            headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert answer.status_code == 202
        await world.settle()
        assert (await world.bridge.store.get_session(session.id)).status is SessionStatus.CLOSED
        [case] = world.rows("Case", Id=session.case.case_id)
        expected = seed.STATUS_RESOLVED if resolve else seed.STATUS_NEW
        assert case["StatusId"].lower() == expected.lower()
