"""The one block of addresses the bridge prints at start-up, and the fixed sandbox ports of
config.example.toml that make those addresses the same at every start."""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path

import anyio
import httpx
import pytest
import tomli_w
from casebridge.addresses import MAX_LABEL, render_block
from casebridge.bridge import Bridge
from casebridge.contributions import Address
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def example_with_free_ports(root: Path) -> tuple[Path, dict[str, int]]:
    """config.example.toml with only its ports changed to free ones."""
    config = tomllib.loads((ROOT / "config.example.toml").read_text())
    ports = {name: free_port() for name in ("http", "smtp", "catcher", "creatio", "sms")}
    config["http"]["port"] = ports["http"]
    config["bridge"]["public_url"] = f"http://127.0.0.1:{ports['http']}"
    email = config["plugins"]["email"]
    email["listen_port"], email["catcher"]["port"] = ports["smtp"], ports["catcher"]
    config["plugins"]["creatio"]["sandbox_port"] = ports["creatio"]
    config["plugins"]["sms"]["sandbox_port"] = ports["sms"]
    path = root / "casebridge.toml"
    path.write_text(tomli_w.dumps(config))
    return path, ports


def test_the_example_gives_every_sandbox_a_fixed_port() -> None:
    config = tomllib.loads((ROOT / "config.example.toml").read_text())
    plugins = config["plugins"]
    fixed = [
        config["http"]["port"],
        plugins["email"]["listen_port"],
        plugins["email"]["catcher"]["port"],
        plugins["creatio"]["sandbox_port"],
        plugins["sms"]["sandbox_port"],
    ]
    assert all(fixed) and len(set(fixed)) == len(fixed)


@pytest.mark.slow
async def test_hook_addresses_name_every_page_at_its_configured_port(tmp_path: Path) -> None:
    path, ports = example_with_free_ports(tmp_path)
    bridge = Bridge.from_config(path)
    async with anyio.create_task_group() as tg:
        await tg.start(bridge.run)
        found = {a.label: a for a in bridge.addresses()}
        async with httpx.AsyncClient(timeout=10) as client:
            for label in ("Creatio sandbox", "SMS sandbox", "Mail catcher"):
                answer = await client.get(found[label].where)
                assert answer.status_code == 200, (label, answer.status_code)
        tg.cancel_scope.cancel()
    http = f"http://127.0.0.1:{ports['http']}"
    assert found["Bridge (API, webhooks)"].where == http
    assert found["Dashboard"].where == f"{http}/"
    creatio = found["Creatio sandbox"]
    assert creatio.where == f"http://127.0.0.1:{ports['creatio']}/sandbox/cases"
    assert creatio.note == "user Supervisor, password Supervisor"
    assert found["SMS sandbox"].where == f"http://127.0.0.1:{ports['sms']}/sandbox"
    assert "auth token sandbox-token" in found["SMS sandbox"].note
    assert found["Mail catcher"].where == f"{http}/mail"
    assert f"127.0.0.1:{ports['catcher']}" in found["Mail catcher"].note
    assert found["Customer email in (SMTP)"].where == f"127.0.0.1:{ports['smtp']}"
    block = render_block(list(found.values()))
    assert f"http://127.0.0.1:{ports['creatio']}/sandbox/cases" in block


def test_a_configured_sms_token_is_not_printed(tmp_path: Path) -> None:
    from casebridge_sms.plugin import SmsPlugin

    plugin = SmsPlugin()
    from casebridge.plugin import PluginContext
    from casebridge.secrets import Secret
    from casebridge_sms.settings import SmsSettings

    class NoBridge:
        registry, store, blob_dir = None, None, tmp_path

    settings = SmsSettings(
        provider="sandbox",
        numbers=["+15005550006"],
        auth_token=Secret("real-looking-token", "test"),
    )
    plugin.configure(PluginContext(NoBridge(), "sms", settings))  # type: ignore[arg-type]
    plugin.sandbox_url = "http://127.0.0.1:1"
    [address] = plugin.addresses()
    assert "real-looking-token" not in address.note and "token" not in address.note


labels = st.text(max_size=40)
wheres = st.text(min_size=1, max_size=60)


@settings(deadline=None)  # the machine is shared: no per-example deadline
@given(st.lists(st.builds(Address, labels, wheres, st.text(max_size=40)), max_size=8))
def test_render_block_is_one_aligned_line_per_address(addresses: list[Address]) -> None:
    lines = render_block(addresses).split("\n")
    assert lines[0] == "Open these:" and len(lines) == len(addresses) + 1
    starts = set()
    for address, line in zip(addresses, lines[1:], strict=True):
        where = " ".join(address.where.split())
        assert line.startswith("  ")
        if where:
            starts.add(line.index(where, 2 + min(len(" ".join(address.label.split())), MAX_LABEL)))
        if " ".join(address.note.split()):
            assert line.endswith(f"({' '.join(address.note.split())})")
    # Every "where" starts in the same column.
    assert len(starts) <= 1
