"""The operator's dashboard over plain HTTP, on a real server on a loopback port: who may
read it, the login cookie, the form token, replaying a dead job and handing a session off."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
from casebridge.bridge import Bridge
from casebridge.dashboard import COOKIE
from casebridge.jobs import HandoffJob
from casebridge.model import SessionStatus
from casebridge.store import NewJob
from casebridge.web import create_app, serve
from support.bridges import (
    API_TOKEN,
    HOOK_TOKEN,
    inbound,
    install_jsonl,
    jsonl_records,
    settle,
    write_config,
)
from support.plugins import LoopChannel

CSRF = re.compile(r'name="csrf" value="([^"]*)"')


@dataclass
class Running:
    bridge: Bridge
    url: str
    loop: LoopChannel

    def client(self, **kwargs) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30, **kwargs)


async def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **http) -> AsyncIterator:
    install_jsonl(monkeypatch, tmp_path)
    path = write_config(tmp_path, http=http) if http else write_config(tmp_path)
    loop = LoopChannel()
    bridge = Bridge.from_config(path, plugins={"loop": loop})
    await bridge.open()
    try:
        async with anyio.create_task_group() as tg:
            port = await tg.start(serve, create_app(bridge), "127.0.0.1", 0)
            yield Running(bridge, f"http://127.0.0.1:{port}", loop)
            tg.cancel_scope.cancel()
    finally:
        await bridge.close()


@pytest.fixture
async def world(tmp_path, monkeypatch) -> AsyncIterator[Running]:
    async for r in running(tmp_path, monkeypatch):
        yield r


@pytest.fixture
async def open_world(tmp_path, monkeypatch) -> AsyncIterator[Running]:
    """A bridge with no API token."""
    async for r in running(tmp_path, monkeypatch, api_token=""):
        yield r


@contextlib.asynccontextmanager
async def signed_in(world: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with world.client() as client:
        answer = await client.post("/login", data={"token": API_TOKEN})
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        yield client


def csrf_of(page: str) -> str:
    tokens = set(CSRF.findall(page))
    assert len(tokens) == 1, tokens
    return tokens.pop()


async def dead_job(bridge: Bridge) -> int:
    """A close job for a session not stored yet: it dies at once (a permanent error)."""
    await bridge.store.enqueue(
        [
            NewJob(
                kind="close",
                payload={"session_id": "s-later"},
                key="close:s-later",
                order_key="s-later",
            )
        ]
    )
    await settle(bridge)
    [job] = await bridge.store.list_jobs("dead")
    assert "s-later is not in the store" in job.last_error
    return job.id


# -- who may read it ------------------------------------------------------------------------


async def test_without_credentials_the_dashboard_is_a_login_page(world: Running) -> None:
    await world.bridge.receive(inbound("My printer jams", msg_id="m1"))
    await settle(world.bridge)
    async with world.client() as client:
        answer = await client.get("/")
    assert answer.status_code == 401
    assert '<form method="post" action="/login">' in answer.text
    assert 'type="password" id="token" name="token"' in answer.text
    assert "Ann Example" not in answer.text and "Sessions" not in answer.text
    assert answer.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


async def test_the_bearer_token_reads_it_a_wrong_one_does_not(world: Running) -> None:
    async with world.client() as client:
        wrong = await client.get("/", headers={"Authorization": "Bearer nope"})
        right = await client.get("/", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert wrong.status_code == 401 and "That token is not the API token." in wrong.text
    assert right.status_code == 200
    assert '<tr class="check"><td>jsonl</td><td class="ok">Active</td></tr>' in right.text
    assert COOKIE not in right.headers.get("set-cookie", "")


async def test_login_sets_a_strict_httponly_cookie_without_the_token(world: Running) -> None:
    async with world.client() as client:
        wrong = await client.post("/login", data={"token": API_TOKEN + "x"})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        assert "That token is not the API token." in wrong.text
        answer = await client.post("/login", data={"token": API_TOKEN})
        assert answer.status_code == 303
        cookie = answer.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE}=")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert API_TOKEN not in cookie
        page = await client.get("/")
        assert page.status_code == 200 and "Sign out" in page.text
        # A cookie that was changed is worth nothing.
        value = client.cookies[COOKIE]
        client.cookies.clear()
        client.cookies.set(COOKIE, value[:-2] + ("AA" if value[-2:] != "AA" else "BB"))
        assert (await client.get("/")).status_code == 401


async def test_a_new_api_token_signs_every_browser_out(world: Running) -> None:
    from dataclasses import replace

    from casebridge.secrets import Secret

    async with signed_in(world) as client:
        assert (await client.get("/")).status_code == 200
        http = replace(world.bridge.config.http, api_token=Secret("another-token", "test"))
        world.bridge.config = replace(world.bridge.config, http=http)
        assert (await client.get("/")).status_code == 401


async def test_sign_out_forgets_the_cookie(world: Running) -> None:
    async with signed_in(world) as client:
        token = csrf_of((await client.get("/")).text)
        out = await client.post("/logout", data={"csrf": token})
        assert out.status_code == 303 and out.headers["location"] == "/?notice=signed-out"
        assert COOKIE not in client.cookies
        assert (await client.get("/")).status_code == 401


# -- what it shows --------------------------------------------------------------------------


async def test_it_shows_sessions_with_working_links_and_dropped_inbounds(world: Running) -> None:
    bridge = world.bridge
    await bridge.receive(inbound("My printer jams", msg_id="m1"))
    await bridge.receive(inbound("STOP", msg_id="m2", sender="bob@example.com"))
    await settle(bridge)
    [session] = await bridge.store.list_sessions()
    async with signed_in(world) as client:
        page = (await client.get("/")).text
        assert '<h3 id="sessions-assistant">assistant (1)</h3>' in page
        row = page[page.index(f'data-session="{session.id}"') :]
        link = re.search(r'href="([^"]+)"', row).group(1).replace("&amp;", "&")
        assert link.startswith(f"{bridge.public_url}/sessions/{session.id}?exp=")
        shown = await client.get(link.removeprefix(bridge.public_url))
        assert shown.status_code == 200 and "My printer jams" in shown.text
        assert "Hand off" in row.split("</tr>")[0]
        dropped = page[page.index('<section id="dropped">') :]
        # Listed by the sender the channel set on its raw inbound.
        assert "<td>loop</td><td>bob@example.com</td><td>opt-out keyword</td>" in dropped


async def test_customer_text_on_the_dashboard_is_escaped(world: Running) -> None:
    await world.bridge.receive(
        inbound("hi", msg_id="m1", name="<script>x()</script>", subject="<b>bold</b> & co")
    )
    await settle(world.bridge)
    async with signed_in(world) as client:
        page = (await client.get("/")).text
    assert "<script>" not in page and "&lt;script&gt;x()&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page


# -- replay and hand-off --------------------------------------------------------------------


async def test_replay_needs_the_form_token_and_a_same_site_origin(world: Running) -> None:
    bridge = world.bridge
    job_id = await dead_job(bridge)
    async with signed_in(world) as client:
        page = (await client.get("/")).text
        assert f'data-job="{job_id}"' in page and "s-later is not in the store" in page
        token = csrf_of(page)
        path = f"/dashboard/jobs/{job_id}/replay"
        assert (await client.post(path)).status_code == 403
        assert (await client.post(path, data={"csrf": "x" * 43})).status_code == 403
        other = await client.post(
            path, data={"csrf": token}, headers={"Origin": "http://evil.example"}
        )
        assert other.status_code == 403 and "another site" in other.text
        assert (await bridge.store.get_job(job_id)).state == "dead"
        # Without the cookie the token alone is nothing either.
        async with world.client() as stranger:
            assert (await stranger.post(path, data={"csrf": token})).status_code == 401
        assert (await bridge.store.get_job(job_id)).state == "dead"

        answer = await client.post(path, data={"csrf": token}, headers={"Origin": world.url})
        assert answer.status_code == 303
        assert answer.headers["location"] == f"/?notice=replayed&job={job_id}"
        job = await bridge.store.get_job(job_id)
        # The outbox is not running here: the job waits, its attempts counted afresh.
        assert job.state == "pending" and job.attempts == 0
        notice = (await client.get(answer.headers["location"])).text
        assert f"Job {job_id} queued again." in notice


async def test_a_replayed_job_that_works_is_done(world: Running) -> None:
    bridge = world.bridge
    job_id = await dead_job(bridge)
    # What it lacked arrives: a session with that id.
    from casebridge.model import Contact, Session

    contact = await bridge.store.create_contact(Contact("c9", "Cy", ("cy@example.com",)))
    await bridge.store.create_session(
        Session("s-later", "loop", contact, SessionStatus.ASSISTANT, channel_address="desk")
    )
    async with signed_in(world) as client:
        token = csrf_of((await client.get("/")).text)
        answer = await client.post(f"/dashboard/jobs/{job_id}/replay", data={"csrf": token})
        assert answer.status_code == 303
        await settle(bridge)
        assert (await bridge.store.get_job(job_id)).state == "done"
        assert (await bridge.store.get_session("s-later")).status is SessionStatus.CLOSED
        again = await client.post(f"/dashboard/jobs/{job_id}/replay", data={"csrf": token})
        assert "not-dead" in again.headers["location"]


async def test_the_bearer_token_may_post_without_a_form_token(world: Running) -> None:
    job_id = await dead_job(world.bridge)
    async with world.client() as client:
        answer = await client.post(
            "/dashboard/jobs/replay", headers={"Authorization": f"Bearer {API_TOKEN}"}
        )
    assert answer.status_code == 303
    assert (await world.bridge.store.get_job(job_id)).state != "dead"


async def test_hand_off_from_the_dashboard_writes_the_case(world: Running) -> None:
    bridge = world.bridge
    await bridge.receive(inbound("My printer jams", msg_id="m1"))
    await settle(bridge)
    [session] = await bridge.store.list_sessions()
    async with signed_in(world) as client:
        token = csrf_of((await client.get("/")).text)
        path = f"/dashboard/sessions/{session.id}/handoff"
        assert (await client.post(path)).status_code == 403
        answer = await client.post(path, data={"csrf": token})
        assert answer.status_code == 303
        await settle(bridge)
        assert (await bridge.store.get_session(session.id)).status is SessionStatus.HANDED_OFF
        [case] = jsonl_records(bridge, "case")
        assert "handed off from the dashboard" in case["description"]
        page = (await client.get("/")).text
        row = page[page.index(f'data-session="{session.id}"') :].split("</tr>")[0]
        assert "Hand off" not in row
        again = await client.post(path, data={"csrf": token})
        assert "notice=not-assistant" in again.headers["location"]
        missing = await client.post("/dashboard/sessions/nope/handoff", data={"csrf": token})
        assert missing.status_code == 404


# -- no API token ---------------------------------------------------------------------------


async def test_with_no_token_only_loopback_may_read_it(open_world: Running) -> None:
    async with open_world.client() as client:
        page = await client.get("/")
        assert page.status_code == 200 and "Sessions" in page.text
        assert f"{COOKIE}=" in page.headers["set-cookie"]
        # A page that rebinds its own name to 127.0.0.1 reaches us with its Host header.
        rebound = await client.get("/", headers={"Host": "attacker.example"})
        assert rebound.status_code == 403 and "api_token" in rebound.text
        assert "Sessions" not in rebound.text
        # Posts still need the form token of the page.
        job_id = await dead_job(open_world.bridge)
        path = f"/dashboard/jobs/{job_id}/replay"
        assert (await client.post(path)).status_code == 403
        token = csrf_of((await client.get("/")).text)
        assert (await client.post(path, data={"csrf": token})).status_code == 303
        assert (await client.get("/login")).status_code == 303


async def test_with_no_token_a_remote_client_is_refused(open_world: Running) -> None:
    transport = httpx.ASGITransport(
        app=create_app(open_world.bridge), client=("203.0.113.9", 40000)
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        answer = await client.get("/")
    assert answer.status_code == 403
    assert "No <code>[http] api_token</code> is set" in answer.text


async def test_with_no_token_a_proxied_request_is_refused(open_world: Running) -> None:
    # A proxy on this machine connects from loopback too; its forwarding headers give it away.
    async with open_world.client() as client:
        for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP", "Via"):
            answer = await client.get("/", headers={header: "203.0.113.9"})
            assert answer.status_code == 403, header


async def test_with_no_token_a_bridge_listening_beyond_loopback_refuses(
    tmp_path, monkeypatch
) -> None:
    async for world in running(tmp_path, monkeypatch, api_token="", host="0.0.0.0"):
        transport = httpx.ASGITransport(app=create_app(world.bridge), client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            assert (await c.get("/")).status_code == 403


async def test_an_oversized_login_form_is_refused(world: Running) -> None:
    async with world.client() as client:
        answer = await client.post("/login", data={"token": "x" * 10_000})
    assert answer.status_code == 413 and "set-cookie" not in answer.headers


# -- on the example configuration -----------------------------------------------------------


@pytest.mark.slow
def test_the_example_runs_a_loopback_dashboard_linking_its_sandboxes(tmp_path: Path) -> None:
    import subprocess
    import sys
    import time

    from test_cli_newcomer import example_config, free_port

    port = free_port()
    config = example_config(tmp_path, http_port=port, smtp_port=free_port())
    bridge = subprocess.Popen(
        [sys.executable, "-m", "casebridge.cli", "run", "--config", str(config)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(url, timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the example bridge did not start"
                time.sleep(0.1)
        # The example sets no api_token: this machine's browser may read it, nobody else.
        assert page.status_code == 200
        links = dict(re.findall(r'<a class="sandbox" href="([^"]+)">(\w+) sandbox</a>', page.text))
        assert sorted(links.values()) == ["creatio", "sms"]
        for link in links:
            assert link.startswith("http://127.0.0.1:")
            assert httpx.get(link, timeout=10, follow_redirects=True).status_code == 200
        refused = httpx.get(url, headers={"Host": "bridge.example"}, timeout=5)
        assert refused.status_code == 403
    finally:
        bridge.terminate()
        bridge.wait(timeout=30)


async def test_each_session_shows_what_became_of_its_last_reply(world: Running) -> None:
    # A reply the channel refused is shown as refused, with the reason, beside its session.
    bridge = world.bridge
    await bridge.receive(inbound("refund please", msg_id="r1", sender="bob@example.com"))
    await bridge.receive(inbound("printer", msg_id="r2", sender="ann@example.com"))
    await settle(bridge)
    world.loop.refused.add("bob@example.com")
    for session in await bridge.store.list_sessions():
        await bridge.enqueue(HandoffJob(session.id, "test", "test", "t").to_new_job())
    await settle(bridge)
    async with world.client() as client:
        for session in await bridge.store.list_sessions():
            reply = {"event_type": "new_activity", "caseId": session.case.case_id,
                     "activityId": f"rep-{session.id}", "text": "We are on it."}
            answer = await client.post(f"/webhooks/jsonl/{HOOK_TOKEN}", json=reply)
            assert answer.status_code == 200
    await settle(bridge)
    async with signed_in(world) as client:
        page = (await client.get("/")).text
    rows = {s.contact.emails[0]: page[page.index(f'data-session="{s.id}"'):].split("</tr>")[0]
            for s in await bridge.store.list_sessions()}
    assert '<span class="delivery sent">sent</span>' in rows["ann@example.com"]
    assert '<span class="delivery refused">refused: the customer opted out</span>' in \
        rows["bob@example.com"]
