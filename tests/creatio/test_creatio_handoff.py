"""The ``handoff`` hook against the Creatio sandbox: two round trips for a new contact, the
same for a returning one, exactly once on a retry, and today's sequence where a server
ignores client-chosen Ids or refuses atomicity groups."""

from __future__ import annotations

import pytest
from casebridge.model import SessionStatus
from casebridge_creatio.sandbox import seed
from plugin_world import API_TOKEN, World, creatio_config, running, sandbox_settings
from support.bridges import inbound


async def hand_off(world: World, session_id: str) -> None:
    answer = await world.http.post(
        f"{world.bridge_url}/api/sessions/{session_id}/handoff",
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    )
    assert answer.status_code == 202
    await world.settle()


async def new_session(world: World, messages: int, tag: str, sender: str) -> str:
    for n in range(messages):
        await world.bridge.receive(inbound(f"{tag} message {n}", msg_id=f"{tag}{n}", sender=sender))
    await world.settle()
    [session] = [s for s in await world.sessions(SessionStatus.ASSISTANT)]
    return session.id


def requests_since(world: World, before: dict) -> dict[str, int]:
    after = world.sandbox.stats()["by_route"]
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def config(tmp_path, **creatio):
    return creatio_config(
        tmp_path, sandbox_settings("login", **creatio), handoff={"max_customer_turns": 0}
    )


async def check_written(world: World, session_id: str, messages: int, tag: str) -> dict:
    """The session's one case holds its messages in order; returns the case row."""
    session = await world.bridge.store.get_session(session_id)
    assert session.status is SessionStatus.HANDED_OFF and session.case is not None
    [case] = world.rows("Case", Id=session.case.case_id)
    activities = world.rows("Activity", CaseId=case["Id"])
    mine = [a for a in activities if f"{tag} message" in a["Body"]]
    assert [f"{tag} message {n}" in a["Body"] for n, a in enumerate(mine)] == [True] * messages
    assert len(mine) == messages
    [contact] = world.rows("Contact", Id=case["ContactId"])
    assert contact["Email"] == "ann@example.com"
    return case


@pytest.mark.parametrize("messages", [1, 5, 20])
async def test_hook_handoff_creatio_new_contact_in_two_requests(tmp_path, messages) -> None:
    async with running(config(tmp_path)) as world:
        session_id = await new_session(world, messages, "t", "ann@example.com")
        before = world.sandbox.stats()["by_route"]
        await hand_off(world, session_id)
        assert requests_since(world, before) == {"POST $batch": 2}
        case = await check_written(world, session_id, messages, "t")
        assert case["Number"] == (await world.bridge.store.get_session(session_id)).case.number
        assert len(world.rows("Contact", Email="ann@example.com")) == 1
        ops = world.sandbox.stats()["batch_operations"]
        assert ops["POST Case"] == 1 and ops["POST Contact"] == 1
        assert ops["POST Activity"] == messages


async def test_hook_handoff_creatio_returning_contact_appends_to_its_open_case(tmp_path) -> None:
    async with running(config(tmp_path)) as world:
        first = await new_session(world, 2, "a", "ann@example.com")
        await hand_off(world, first)
        # The first conversation ends in casebridge; its case stays open in Creatio.
        answer = await world.http.post(
            f"{world.bridge_url}/api/sessions/{first}/close",
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        )
        assert answer.status_code == 202
        await world.settle()
        second = await new_session(world, 3, "b", "ann@example.com")
        before = world.sandbox.stats()["by_route"]
        await hand_off(world, second)
        # The bridge remembers the open case: the write batch alone.
        assert requests_since(world, before) == {"POST $batch": 1}
        case = await check_written(world, second, 3, "b")
        assert case["Id"] == (await world.bridge.store.get_session(first)).case.case_id
        assert len([c for c in world.rows("Case") if c["ContactId"] == case["ContactId"]]) == 1


async def test_hook_handoff_creatio_contact_already_in_creatio(tmp_path) -> None:
    async with running(config(tmp_path)) as world:
        rep = await world.rep_session()
        try:
            made = await rep.post(
                "/0/odata/Contact", json={"Name": "Ann in Creatio", "Email": "ann@example.com"}
            )
        finally:
            await rep.aclose()
        existing = made.json()["Id"]
        session_id = await new_session(world, 2, "c", "ann@example.com")
        before = world.sandbox.stats()["by_route"]
        await hand_off(world, session_id)
        assert requests_since(world, before) == {"POST $batch": 2}
        case = await check_written(world, session_id, 2, "c")
        assert case["ContactId"] == existing
        assert len(world.rows("Contact", Email="ann@example.com")) == 1


@pytest.mark.parametrize("mode", ["500", "drop"])
async def test_hook_handoff_creatio_retried_write_batch_writes_nothing_twice(
    tmp_path, mode, caplog
) -> None:
    async with running(config(tmp_path)) as world:
        session_id = await new_session(world, 4, "r", "ann@example.com")
        # The reads pass; the writes land, then their answer is lost.
        await world.faults(script=["ok", "fail_after_write"], fail_after_write_mode=mode)
        await hand_off(world, session_id)
        await check_written(world, session_id, 4, "r")
        assert len(world.rows("Case")) == 1
        assert len(world.rows("Contact", Email="ann@example.com")) == 1
        assert world.sandbox.stats()["faults_injected"]
        if mode == "drop":
            # The write batch's answer is lost: the handoff completes it request by request.
            assert "completing it request by request" in caplog.text
        else:
            # A 500 ends the attempt (the client does not retry); the outbox's next attempt
            # recognises what landed by its Ids.
            jobs = await world.bridge.store.list_jobs("done")
            assert [j.attempts for j in jobs if j.kind == "handoff"] == [2]


@pytest.mark.parametrize("atomic", [True, False])
@pytest.mark.parametrize("switch", ["ignore_client_ids", "refuse_atomicity_groups"])
async def test_hook_handoff_creatio_falls_back_where_the_server_refuses(
    tmp_path, atomic, switch, caplog
) -> None:
    async with running(config(tmp_path, atomic_handoff=atomic)) as world:
        await world.faults(**{switch: True})
        session_id = await new_session(world, 3, "f", "ann@example.com")
        before = world.sandbox.stats()["by_route"]
        await hand_off(world, session_id)
        await check_written(world, session_id, 3, "f")
        assert len(world.rows("Case")) == 1
        assert len(world.rows("Contact", Email="ann@example.com")) == 1
        spent = requests_since(world, before)
        # Today's sequence: contact, open case, case, activities, one request each at least.
        assert sum(spent.values()) >= 4, spent
        # Only the batch path meets the refusal, and says what to do about it.
        assert ("completing it request by request" in caplog.text) == atomic


@pytest.mark.slow
async def test_hook_handoff_creatio_more_than_100_writes_split(tmp_path) -> None:
    async with running(config(tmp_path)) as world:
        session_id = await new_session(world, 120, "m", "ann@example.com")
        before = world.sandbox.stats()["by_route"]
        await hand_off(world, session_id)
        assert requests_since(world, before) == {"POST $batch": 3}
        await check_written(world, session_id, 120, "m")


async def test_hook_handoff_creatio_remembered_case_closed_meanwhile_gets_a_new_case(
    tmp_path,
) -> None:
    async with running(config(tmp_path)) as world:
        first = await new_session(world, 1, "a", "ann@example.com")
        await hand_off(world, first)
        old_case = (await world.bridge.store.get_session(first)).case.case_id
        rep = await world.rep_session()
        try:
            closed = await rep.patch(
                f"/0/odata/Case({old_case})", json={"StatusId": seed.STATUS_CLOSED}
            )
        finally:
            await rep.aclose()
        assert closed.status_code == 204
        await world.settle()
        second = await new_session(world, 2, "b", "ann@example.com")
        before = world.sandbox.stats()["by_route"]
        await hand_off(world, second)
        # The guarded append is refused as a whole; then reads and writes as for a new case.
        assert requests_since(world, before) == {"POST $batch": 3}
        case = await check_written(world, second, 2, "b")
        assert case["Id"] != old_case
        assert len(world.rows("Activity", CaseId=old_case)) == 1
