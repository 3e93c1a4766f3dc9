"""The Creatio plugin in a real runner: the pipeline writes cases and activities into the
in-process Creatio sandbox, reps' replies come back through its business-process webhook,
and faults injected by the sandbox do not duplicate anything. Both sign-in modes."""

from __future__ import annotations

from pathlib import Path

import pytest
from casebridge.model import Author, SessionStatus
from casebridge_creatio.sandbox import seed
from plugin_world import creatio_config, running, sandbox_settings
from support.bridges import inbound, only_session

pytestmark = pytest.mark.anyio

MODES = ["login", "oauth"]
HIGH_PRIORITY = [{"column": "PriorityId", "value": "High", "kind": "lookup"}]


def config(tmp_path: Path, mode: str, outbox: dict | None = None, **creatio) -> Path:
    settings = sandbox_settings(
        mode,
        owner_id=seed.AGENT_CONTACT,
        group_id=seed.GROUP_SUPPORT_LINE_1,
        origin_names={"loop": "Chat"},
        **creatio,
    )
    return creatio_config(tmp_path, settings, fields={"rules": HIGH_PRIORITY},
                          outbox=outbox or {})


def texts_in_order(activities: list[dict], texts: list[str]) -> bool:
    """Whether each activity's body holds the text at the same position."""
    return len(activities) == len(texts) and all(
        text in str(a["Body"]) for a, text in zip(activities, texts, strict=True)
    )


@pytest.mark.parametrize("mode", MODES)
async def test_hook_create_case_creatio_handoff_to_close_and_a_new_case(tmp_path, mode) -> None:
    async with running(config(tmp_path, mode)) as world:
        words = ["My printer prints blank pages.", "It is the LaserJet 400.",
                 "It still does not work."]
        for n, text in enumerate(words, 1):
            await world.bridge.receive(inbound(text, msg_id=f"m{n}"))
        await world.settle()

        # The third message hands off: exactly one case, filled as configured.
        session = await only_session(world.bridge, SessionStatus.HANDED_OFF)
        [case] = world.rows("Case")
        assert session.case is not None and session.case.case_id == case["Id"]
        assert session.case.number == case["Number"] and case["Number"].startswith("SR")
        [contact] = world.rows("Contact", Email="ann@example.com")
        assert contact["Name"] == "Ann Example"
        assert case["ContactId"] == contact["Id"]
        assert "Ann Example" in case["Symptoms"] and words[0] in case["Symptoms"]
        assert case["Subject"] and "Printer" in case["Subject"]
        assert case["OriginId"] == seed.ORIGIN_CHAT
        assert case["OwnerId"] == seed.AGENT_CONTACT
        assert case["GroupId"] == seed.GROUP_SUPPORT_LINE_1
        assert case["PriorityId"] == seed.PRIORITY_HIGH
        assert case["StatusId"] == seed.STATUS_NEW

        # One activity per message, in order; the first carries the session link.
        activities = world.rows("Activity", CaseId=case["Id"])
        assert texts_in_order(activities, words)
        assert f"/sessions/{session.id}?exp=" in activities[0]["Body"]
        assert all("/sessions/" not in a["Body"] for a in activities[1:])
        assert all(a["DetailedResult"].startswith("casebridge:") for a in activities)

        # After handoff every message is appended at once.
        await world.bridge.receive(inbound("Any news?", msg_id="m4"))
        await world.settle()
        activities = world.rows("Activity", CaseId=case["Id"])
        assert texts_in_order(activities, [*words, "Any news?"])

        # A returning contact (another conversation) is appended to the open case.
        await world.bridge.receive(
            inbound("I need to talk to a human about my other order", msg_id="r1", to="desk2"))
        await world.settle()
        sessions = await world.sessions(SessionStatus.HANDED_OFF)
        assert len(sessions) == 2 and {s.case.case_id for s in sessions} == {case["Id"]}
        assert len(world.rows("Case")) == 1
        assert len(world.rows("Activity", CaseId=case["Id"])) == 5
        newest = sessions[0]

        # A rep answers in the sandbox's own case page: the business process posts to the
        # bridge, which reads the activity back and delivers it on the channel.
        page = await world.http.post(f"{world.sandbox_url}/sandbox/cases/{case['Id']}/reply",
                                     data={"body": "We sent a new printer.\n\nRegards, Alex"})
        assert page.status_code == 303
        await world.settle()
        [reply] = world.loop.sent
        assert reply.author is Author.AGENT
        assert reply.text == "We sent a new printer.\n\nRegards, Alex"
        assert "<p>We sent a new printer.</p>" in reply.html
        assert reply.sender_name == "Alex Agent" and reply.session_id == newest.id

        # A reply added over OData (an integration, a rep's e-mail client) arrives too.
        await world.rep_odata_reply(case["Id"], "<p>Tracking: <b>ZX-1</b></p><script>x</script>")
        await world.settle()
        assert [m.text for m in world.loop.sent] == [reply.text, "Tracking: ZX-1"]
        assert "<script>" not in world.loop.sent[1].html
        # Nothing the bridge wrote came back as a reply, and replies are not written twice.
        assert len(world.rows("Activity", CaseId=case["Id"])) == 7

        # The rep closes the case: the session is closed; the next message opens a new case.
        page = await world.http.post(f"{world.sandbox_url}/sandbox/cases/{case['Id']}/close")
        assert page.status_code == 303
        await world.settle()
        assert (await world.bridge.store.get_session(newest.id)).status is SessionStatus.CLOSED
        await world.bridge.receive(
            inbound("Talk to a human please, it broke again", msg_id="r2", to="desk2"))
        await world.settle()
        cases = world.rows("Case")
        assert len(cases) == 2 and cases[1]["ContactId"] == contact["Id"]
        fresh = [s for s in await world.sessions(SessionStatus.HANDED_OFF)
                 if s.case.case_id == cases[1]["Id"]]
        assert len(fresh) == 1 and fresh[0].id != newest.id
        assert texts_in_order(world.rows("Activity", CaseId=cases[1]["Id"]),
                              ["Talk to a human please, it broke again"])
        assert len(world.loop.sent) == 2


@pytest.mark.parametrize("mode", MODES)
async def test_hook_append_activity_creatio_faults_write_each_record_once(tmp_path, mode) -> None:
    # The client makes one attempt per request: every retry is the outbox's, so its budget
    # is what carries the jobs through this much failure.
    path = config(tmp_path, mode, outbox={"max_attempts": 60})
    async with running(path) as world:
        await world.bridge.receive(inbound("hello, my modem is down", msg_id="f0"))
        await world.settle()
        # From here a share of requests fails: 5xx, 429 with Retry-After, an expired
        # session, a dropped connection, a 500 or a drop after the write was saved.
        await world.faults(script=["429"], retry_after_s=1, error_rate=0.1,
                           throttle_rate=0.05, expire_rate=0.1, drop_rate=0.08,
                           fail_after_write_rate=0.1, seed=11)
        words = ["hello, my modem is down", "the light is red", "still red",
                 "rebooted, no change", "any update?"]
        for n, text in enumerate(words[1:], 1):
            await world.bridge.receive(inbound(text, msg_id=f"f{n}"))
            await world.settle_outbox()
        injected = (await world.http.get(f"{world.sandbox_url}/sandbox/admin/stats")).json()
        await world.faults(error_rate=0.0, throttle_rate=0.0, expire_rate=0.0, drop_rate=0.0,
                           fail_after_write_rate=0.0)
        await world.settle()

        faults = injected["faults_injected"]
        assert {"429", "5xx", "expire", "drop"} <= set(faults), faults
        [case] = world.rows("Case")
        assert texts_in_order(world.rows("Activity", CaseId=case["Id"]), words)
        assert len(world.rows("Contact", Email="ann@example.com")) == 1
        assert not await world.bridge.store.list_jobs("dead")
