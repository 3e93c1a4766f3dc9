from __future__ import annotations

import argparse
import inspect
import json
import socket

import anyio
import httpx
import pytest
from casebridge_sms.commands import sms_commands
from casebridge_sms.segments import segment


def command(path: tuple[str, ...]):
    [found] = [c for c in sms_commands() if c.path == path]
    parser = argparse.ArgumentParser(prog="casebridge " + " ".join(path))
    found.configure(parser)
    return found, parser


@pytest.mark.parametrize("smart", [False, True])
@pytest.mark.parametrize("text", ["hello", "“quoted” — 😀 " * 12, "{[]}" * 50])
def test_segments_prints_json(capsys: pytest.CaptureFixture[str], text: str, smart: bool) -> None:
    found, parser = command(("sms", "segments"))
    args = parser.parse_args([text, *(["--smart"] if smart else [])])
    assert found.run(args) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = segment(text, smart=smart)
    assert printed["encoding"] == expected.encoding
    assert printed["segments"] == expected.segments
    assert printed["parts"] == list(expected.parts)


def test_segments_smart_changes_the_encoding(capsys: pytest.CaptureFixture[str]) -> None:
    found, parser = command(("sms", "segments"))
    found.run(parser.parse_args(["it’s “fine”"]))
    plain = json.loads(capsys.readouterr().out)
    found.run(parser.parse_args(["--smart", "it’s “fine”"]))
    smart = json.loads(capsys.readouterr().out)
    assert (plain["encoding"], smart["encoding"]) == ("UCS-2", "GSM-7")
    assert smart["parts"] == ['it\'s "fine"']


@pytest.mark.anyio
async def test_sandbox_command_serves_until_cancelled(capsys: pytest.CaptureFixture[str]) -> None:
    found, parser = command(("sandbox", "sms"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = parser.parse_args(["--port", str(port), "--auth-token", "cli-token-123"])
    result = found.run(args)
    assert inspect.isawaitable(result)
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: result)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            with anyio.fail_after(10):
                while True:
                    try:
                        answer = await client.get("/sandbox/messages")
                        break
                    except httpx.ConnectError:
                        await anyio.sleep(0.05)
            api = f"/2010-04-01/Accounts/{'AC' + '0' * 32}/Messages.json"
            ok = await client.get(api, auth=("AC" + "0" * 32, "cli-token-123"))
        tg.cancel_scope.cancel()
    assert answer.json()["messages"] == []
    assert ok.status_code == 200
    assert "cli-token-123" not in capsys.readouterr().out


async def test_sandbox_command_takes_the_accounts_numbers_and_can_switch_off_opt_out(
    closed_port: int,
) -> None:
    found, parser = command(("sandbox", "sms"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    own, ann, sid = "+14155550000", "+14155550100", "AC" + "0" * 32
    args = parser.parse_args(["--port", str(port), "--auth-token", "t", "--number", own,
                              "--no-opt-out"])
    api = f"/2010-04-01/Accounts/{sid}/Messages.json"
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: found.run(args))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", auth=(sid, "t")) as c:
            with anyio.fail_after(10):
                while True:
                    try:
                        await c.get("/sandbox/messages")
                        break
                    except httpx.ConnectError:
                        await anyio.sleep(0.05)
            # The webhook is down; the provider has taken the STOP all the same (or not).
            stop = {"from": ann, "to": own, "body": "STOP",
                    "webhook_url": f"http://127.0.0.1:{closed_port}/in"}
            assert (await c.post("/sandbox/inbound", json=stop)).status_code == 502
            ours = await c.post(api, data={"To": ann, "From": own, "Body": "hi"})
            other = await c.post(api, data={"To": ann, "From": "+14155550001", "Body": "hi"})
            listed = (await c.get("/sandbox/messages")).json()["messages"]
        tg.cancel_scope.cancel()
    assert ours.status_code == 201  # --number: ours; --no-opt-out: STOP blocked nothing
    assert (other.status_code, other.json()["code"]) == (400, 21659)
    assert [m["direction"] for m in listed] == ["outbound-api"]  # no opt-out answer either
