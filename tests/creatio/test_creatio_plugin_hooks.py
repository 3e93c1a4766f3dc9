"""Each hook of the Creatio plugin through a real runner: check, services, the webhook,
the reconciliation poll, the CLI, settings, and the CRM hooks the pipeline calls."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import anyio
import httpx
import pytest
from casebridge.bridge import Bridge
from casebridge.cli import main
from casebridge.config import ConfigError
from casebridge.contributions import ConfigSection
from casebridge.model import Author, Contact, SessionStatus
from casebridge.web import serve
from casebridge_creatio.plugin import CreatioPlugin
from casebridge_creatio.reconcile import STATE_KEY
from casebridge_creatio.sandbox import SandboxSettings, create_sandbox_app, seed
from casebridge_creatio.settings import CreatioSettings
from plugin_world import (
    World,
    creatio_config,
    free_port,
    running,
    sandbox_settings,
    wait_until,
)
from support.bridges import inbound, only_session
from support.plugins import LoopChannel

pytestmark = pytest.mark.anyio

HOOK_TOKEN = "hook-token-0123456789"
HOOK_SECRET = "hook-secret-9876543210"


@asynccontextmanager
async def served_sandbox() -> AsyncIterator[str]:
    """A Creatio sandbox on its own loopback port, as a real instance would be."""
    app = create_sandbox_app(SandboxSettings())
    async with app.router.lifespan_context(app), anyio.create_task_group() as tg:
        port = await tg.start(serve, app, "127.0.0.1", 0)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            tg.cancel_scope.cancel()


def configured(tmp_path: Path, **creatio) -> Bridge:
    return Bridge.from_config(creatio_config(tmp_path, creatio), plugins={"loop": LoopChannel()})


async def check(bridge: Bridge):
    return await bridge.hooks.check("creatio")


async def hand_off(world: World) -> str:
    """Hand Ann's conversation off and return her case id."""
    await world.bridge.receive(inbound("I want to talk to a human", msg_id="h1"))
    await world.settle()
    session = await only_session(world.bridge, SessionStatus.HANDED_OFF)
    assert session.case is not None
    return session.case.case_id


# -- config_section, configure, cli_commands -----------------------------------------------------


def test_hook_config_section_creatio_declares_its_settings() -> None:
    assert CreatioPlugin().config_section() == ConfigSection("creatio", CreatioSettings)


def test_hook_config_section_creatio_bad_settings_name_the_key(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"\[plugins.creatio\].*owner_id: 'nope' is not a GUID"):
        configured(tmp_path, url="sandbox", owner_id="nope")
    with pytest.raises(ConfigError, match=r'auth = "login" needs username and password'):
        configured(tmp_path, url="https://acme.creatio.com", username="api")


async def test_hook_configure_creatio_makes_a_webhook_token_only_for_the_sandbox(tmp_path) -> None:
    sandbox = configured(tmp_path / "a", url="sandbox")
    plugin = sandbox.pm.get_plugin("creatio")
    assert plugin.webhook_token is not None and len(plugin.webhook_token.reveal()) >= 24
    assert plugin.webhook_token.reveal() not in repr(plugin)
    other = configured(tmp_path / "b", url="sandbox").pm.get_plugin("creatio")
    assert other.webhook_token.reveal() != plugin.webhook_token.reveal()

    real = configured(tmp_path / "c", url="https://acme.creatio.com", username="api",
                      password="pw-not-shown")
    plugin = real.pm.get_plugin("creatio")
    assert plugin.webhook_token is None and "pw-not-shown" not in repr(plugin)


@pytest.mark.usefixtures("root_logging")
def test_hook_cli_commands_creatio_adds_the_sandbox_command(capsys) -> None:
    assert [c.path for c in CreatioPlugin().cli_commands()] == [("sandbox", "creatio")]
    with pytest.raises(SystemExit) as done:
        main(["sandbox", "creatio", "--help"])
    assert done.value.code == 0 and "--port" in capsys.readouterr().out


@pytest.fixture
def root_logging():
    """The CLI configures the root logger; put it back for the tests that follow."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
def test_hook_check_creatio_from_the_command_line(tmp_path, capsys) -> None:
    bad_owner = str(uuid.uuid4())
    good = creatio_config(tmp_path / "good", {"url": "sandbox"}, bridge={"channels": []})
    bad = creatio_config(tmp_path / "bad", {"url": "sandbox", "owner_id": bad_owner},
                         bridge={"channels": []})
    assert main(["check", "--config", str(good)]) == 0
    assert "creatio: Active" in capsys.readouterr().out
    assert main(["check", "--config", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"creatio: FAILED: owner_id: Creatio has no Contact with Id {bad_owner}" in out


# -- check -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["login", "oauth"])
async def test_hook_check_creatio_active_against_the_running_sandbox(tmp_path, mode) -> None:
    settings = sandbox_settings(mode, owner_id=seed.AGENT_CONTACT,
                                group_id=seed.GROUP_SUPPORT_LINE_2, origin_names={"sms": "SMS"})
    async with running(creatio_config(tmp_path, settings)) as world:
        result = await check(world.bridge)
    assert result.ok and result.detail == "Active"


async def test_hook_check_creatio_detached_sandbox_checks_the_guids(tmp_path) -> None:
    assert (await check(configured(tmp_path / "a", url="sandbox"))).ok
    missing_group = str(uuid.uuid4())
    bridge = configured(tmp_path / "b", url="sandbox", group_id=missing_group,
                        origin_names={"sms": "Carrier pigeon"})
    result = await check(bridge)
    assert not result.ok
    assert result.detail == (
        f"group_id: Creatio has no SysAdminUnit with Id {missing_group}; "
        "origin_names.sms: Creatio has no CaseOrigin named 'Carrier pigeon'"
    )


async def test_hook_check_creatio_says_exactly_what_failed(tmp_path) -> None:
    async with served_sandbox() as url:
        ok = configured(tmp_path / "ok", url=url, username="Supervisor", password="Supervisor")
        assert (await check(ok)).detail == "Active"

        wrong = configured(tmp_path / "pw", url=url, username="Supervisor",
                           password="wrong-password-123")
        result = await check(wrong)
        assert not result.ok and "refused the login for user 'Supervisor'" in result.detail
        assert "wrong-password-123" not in result.detail

        oauth = configured(tmp_path / "oauth", url=url, auth="oauth", identity_url=url,
                           client_id="casebridge-sandbox", client_secret="not-the-secret")
        result = await check(oauth)
        assert not result.ok and "refused client 'casebridge-sandbox'" in result.detail
        assert "not-the-secret" not in result.detail

        owner = str(uuid.uuid4())
        missing = configured(tmp_path / "owner", url=url, username="Supervisor",
                             password="Supervisor", owner_id=owner)
        result = await check(missing)
        assert not result.ok
        assert result.detail == f"owner_id: Creatio has no Contact with Id {owner}"

    dead = f"http://127.0.0.1:{free_port()}"
    gone = configured(tmp_path / "dead", url=dead, username="Supervisor", password="Supervisor")
    result = await check(gone)
    assert not result.ok
    assert result.detail.startswith(f"Creatio at {dead} unreachable")


# -- services ----------------------------------------------------------------------------------


async def test_hook_services_creatio_start_the_sandbox_wired_to_the_bridge(tmp_path) -> None:
    async with running(creatio_config(tmp_path, {"url": "sandbox"})) as world:
        names = [s.name for s in world.plugin.services()]
        assert names == ["creatio sandbox", "creatio"]
        token = world.plugin.webhook_token.reveal()
        webhook = world.sandbox.settings.webhook_url
        # The sandbox posts to the bridge's own HTTP server, not to the public URL.
        assert webhook == f"{world.bridge_url}/webhooks/creatio/{token}"
        page = await world.http.get(f"{world.sandbox_url}/sandbox/cases")
        assert page.status_code == 200
        assert (tmp_path / "data" / "creatio-sandbox.sqlite").exists()


async def test_hook_services_creatio_unreachable_at_start_does_not_stop_the_runner(
    tmp_path, caplog
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    path = creatio_config(tmp_path, {"url": dead, "username": "u", "password": "p",
                                     "webhook_token": HOOK_TOKEN, "reconcile_interval": 60})
    caplog.set_level(logging.ERROR, logger="casebridge.creatio")
    async with running(path) as world:
        services = world.plugin.services()
        assert [s.name for s in services] == ["creatio", "creatio reconcile"]
        assert [s.singleton for s in services] == [False, True]
        await wait_until(lambda: any("is unreachable" in r.getMessage() for r in caplog.records))
        ready = await world.http.get(f"{world.bridge_url}/readyz")
        assert ready.status_code == 200 and ready.json()["ready"]
        # A business-process call that cannot be read back is answered 503: Creatio retries.
        answer = await world.http.post(
            f"{world.bridge_url}/webhooks/creatio/{HOOK_TOKEN}",
            json={"event_type": "new_activity", "caseId": str(uuid.uuid4()),
                  "activityId": str(uuid.uuid4())})
        assert answer.status_code == 503 and "unreachable" in answer.json()["error"]
    message = next(r.getMessage() for r in caplog.records if "is unreachable" in r.getMessage())
    assert message.startswith(f"Creatio at {dead} is unreachable")


async def test_hook_services_creatio_poll_covers_a_lost_webhook(tmp_path) -> None:
    path = creatio_config(tmp_path, {"url": "sandbox", "reconcile_interval": 0.1})
    async with running(path) as world:
        case_id = await hand_off(world)
        processes = world.sandbox.processes
        processes.settings = replace(processes.settings, webhook_url=None)
        await world.rep_odata_reply(case_id, "Found it in the poll", html=False)
        await wait_until(lambda: bool(world.loop.sent))
        assert [m.text for m in world.loop.sent] == ["Found it in the poll"]


# -- the reconciliation poll -------------------------------------------------------------------


async def test_reconcile_once_creatio_finds_replies_and_closed_cases(tmp_path) -> None:
    async with running(creatio_config(tmp_path, {"url": "sandbox"})) as world:
        case_id = await hand_off(world)
        # Every business-process call is lost from now on.
        processes = world.sandbox.processes
        processes.settings = replace(processes.settings, webhook_url=None)
        first = await world.plugin.reconcile_once()
        assert (first.cases, first.replies, first.closed) == (1, 0, 0)
        assert first.activities == 1  # the bridge's own activity, not a reply
        assert await world.bridge.store.get_state("creatio", STATE_KEY)

        await world.rep_odata_reply(case_id, "<p>Reply one</p>")
        await world.http.post(f"{world.sandbox_url}/sandbox/cases/{case_id}/reply",
                              data={"body": "Reply two"})
        found = await world.plugin.reconcile_once()
        assert found.replies == 2
        again = await world.plugin.reconcile_once()
        assert again.replies == 0
        await world.settle()
        assert [m.text for m in world.loop.sent] == ["Reply one", "Reply two"]

        await world.http.post(f"{world.sandbox_url}/sandbox/cases/{case_id}/close")
        closed = await world.plugin.reconcile_once()
        assert closed.closed == 1
        await world.settle()
        session = await only_session(world.bridge)
        assert session.status is SessionStatus.CLOSED
        assert (await world.plugin.reconcile_once()).cases == 0


# -- read_webhook ------------------------------------------------------------------------------


async def test_hook_read_webhook_creatio_refuses_forged_and_malformed_calls(tmp_path) -> None:
    path = creatio_config(tmp_path, {"url": "sandbox", "webhook_token": HOOK_TOKEN,
                                     "webhook_secret": HOOK_SECRET})
    async with running(path) as world:
        case_id = await hand_off(world)
        [mine] = world.rows("Activity", CaseId=case_id)
        url = f"{world.bridge_url}/webhooks/creatio"
        good = {"X-Casebridge-Secret": HOOK_SECRET}
        event = {"event_type": "new_activity", "caseId": case_id, "activityId": mine["Id"]}

        async def post(token: str, body: object, headers: dict[str, str]) -> httpx.Response:
            if isinstance(body, bytes):
                return await world.http.post(f"{url}/{token}", content=body, headers=headers)
            return await world.http.post(f"{url}/{token}", json=body, headers=headers)

        for token, headers in [("guessed-token", good), (HOOK_TOKEN, {}),
                               (HOOK_TOKEN, {"X-Casebridge-Secret": "guess"})]:
            answer = await post(token, event, headers)
            assert answer.status_code == 403
            assert HOOK_TOKEN not in answer.text and HOOK_SECRET not in answer.text

        answer = await post(HOOK_TOKEN, b"{not json", good)
        assert answer.status_code == 400 and "not JSON" in answer.json()["error"]
        # Nesting that would exhaust the parser's recursion is a 400 too, not a 500.
        answer = await post(HOOK_TOKEN, b"[" * 100_000, good)
        assert answer.status_code == 400, answer.text
        assert "nested deeper than 64 levels" in answer.json()["error"]
        answer = await post(HOOK_TOKEN, {"event_type": "new_activity", "caseId": case_id}, good)
        assert answer.status_code == 400
        assert answer.json()["error"] == "activityId must be a GUID, got nothing"
        answer = await post(HOOK_TOKEN, {"event_type": "deleted", "caseId": case_id}, good)
        assert answer.status_code == 400 and "event_type must be one of" in answer.text

        # Authentic calls: the bridge's own activity, a missing one and a case that is
        # still open are no events.
        assert (await post(HOOK_TOKEN, event, good)).json() == {"accepted": 0}
        missing = {**event, "activityId": str(uuid.uuid4())}
        assert (await post(HOOK_TOKEN, missing, good)).json() == {"accepted": 0}
        still_open = {"event_type": "case_closed", "caseId": case_id,
                      "statusId": seed.STATUS_CLOSED}
        assert (await post(HOOK_TOKEN, still_open, good)).json() == {"accepted": 0}
        await world.settle()
        assert world.loop.sent == []
        assert (await only_session(world.bridge)).status is SessionStatus.HANDED_OFF

        # The sandbox's own calls carry the secret header: a rep's reply gets through.
        await world.http.post(f"{world.sandbox_url}/sandbox/cases/{case_id}/reply",
                              data={"body": "Hello Ann"})
        await world.settle()
        assert [(m.author, m.text) for m in world.loop.sent] == [(Author.AGENT, "Hello Ann")]
        deliveries = (await world.http.get(f"{world.sandbox_url}/sandbox/admin/webhooks")).json()
        assert all(d["delivered"] for d in deliveries["deliveries"])


async def test_hook_read_webhook_creatio_closed_without_a_token_configured(tmp_path) -> None:
    async with served_sandbox() as url:
        path = creatio_config(tmp_path, {"url": url, "username": "Supervisor",
                                         "password": "Supervisor"})
        async with running(path) as world:
            answer = await world.http.post(
                f"{world.bridge_url}/webhooks/creatio/anything",
                json={"event_type": "case_closed", "caseId": str(uuid.uuid4())})
        assert answer.status_code == 403 and "no webhook_token" in answer.json()["error"]


# -- the CRM hooks, called directly ------------------------------------------------------------


async def test_hook_sync_contact_creatio_finds_or_creates_once(tmp_path) -> None:
    async with running(creatio_config(tmp_path, {"url": "sandbox"})) as world:
        hooks = world.bridge.hooks
        bo = Contact(id="bo", name="Bo Phone", phones=("+447700900123",))
        synced = await hooks.sync_contact("creatio", bo)
        assert synced.crm_id and synced.phones == bo.phones
        again = await hooks.sync_contact("creatio", replace(bo, id="bo-2"))
        assert again.crm_id == synced.crm_id
        [row] = world.rows("Contact", Id=synced.crm_id)
        assert row["Name"] == "Bo Phone" and row["MobilePhone"] == "+447700900123"


async def test_hook_get_case_creatio_open_closed_and_missing(tmp_path) -> None:
    async with running(creatio_config(tmp_path, {"url": "sandbox"})) as world:
        hooks = world.bridge.hooks
        assert await hooks.get_case("creatio", str(uuid.uuid4())) is None
        case_id = await hand_off(world)
        case = await hooks.get_case("creatio", case_id)
        assert case is not None and case.is_open and case.number.startswith("SR")
        assert case.url.endswith(f"/Case_FormPage/edit/{case_id}")
        session = await only_session(world.bridge)
        found = await hooks.find_open_case("creatio", session.contact)
        assert found == case
        await world.http.post(f"{world.sandbox_url}/sandbox/cases/{case_id}/close")
        closed = await hooks.get_case("creatio", case_id)
        assert closed is not None and not closed.is_open
        assert closed.status == seed.STATUS_CLOSED
        assert await hooks.find_open_case("creatio", session.contact) is None


# -- the plugin's name ---------------------------------------------------------------------------


async def test_the_plugin_is_named_as_the_toml_names_it(tmp_path) -> None:
    # Nothing in the plugin names itself "creatio": under another name (a second tenant) its
    # cases, CRM events, state and webhook path all carry that name.
    table = {"url": "sandbox", "reconcile_interval": 0}
    path = creatio_config(tmp_path, {}, bridge={"crm": "tenant_b"}, plugins={"tenant_b": table})
    async with running(path, name="tenant_b") as world:
        assert world.plugin.name == "tenant_b"
        assert [s.name for s in world.plugin.services()] == ["tenant_b sandbox", "tenant_b"]
        token = world.plugin.webhook_token.reveal()
        assert world.sandbox.settings.webhook_url == (
            f"{world.bridge_url}/webhooks/tenant_b/{token}")
        for n in range(3):
            await world.bridge.receive(inbound(f"still broken {n}", msg_id=f"t{n}"))
        await world.settle()
        session = await only_session(world.bridge, SessionStatus.HANDED_OFF)
        assert session.case is not None and session.case.crm == "tenant_b"
        [case] = world.rows("Case")
        assert await world.bridge.store.get_state(
            "tenant_b", f"open-case:{case['ContactId'].lower()}")
        # A rep's reply comes back through /webhooks/tenant_b/... to the customer.
        await world.rep_odata_reply(case["Id"], "<p>On its way</p>")
        await world.settle()
        assert [m.text for m in world.loop.sent] == ["On its way"]
        assert (await world.plugin.check()).ok
