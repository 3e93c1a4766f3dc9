"""The deployment files under deploy/ cannot run here (no systemd, no Docker): parse each one
and check it against the code it drives, so a renamed command, port or route breaks a test
rather than a deployment."""

from __future__ import annotations

import argparse
import configparser
import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from casebridge.bridge import Bridge
from casebridge.cli import build_parser, core_commands, plugin_commands
from casebridge.web import create_app

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CONFIG_IN_IMAGE = "/etc/casebridge/casebridge.toml"


def cli(argv: list[str]) -> argparse.Namespace:
    """What casebridge's own parser makes of ``argv`` (SystemExit if it refuses it)."""
    return build_parser([*core_commands(), *plugin_commands()]).parse_args(argv)


def env_names(value: Any) -> set[str]:
    """Every ``{env = "NAME"}`` secret in a parsed TOML table."""
    if isinstance(value, dict):
        if set(value) == {"env"}:
            return {value["env"]}
        return {name for v in value.values() for name in env_names(v)}
    if isinstance(value, list):
        return {name for v in value for name in env_names(v)}
    return set()


def env_example() -> dict[str, str]:
    lines = (DEPLOY / "env.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line and not line.startswith("#")]
    return {k: v for k, v in pairs}


@pytest.fixture(scope="module")
def toml() -> dict[str, Any]:
    return tomllib.loads((DEPLOY / "casebridge.toml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    rows = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in rows if line and not line.startswith("#")]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_the_production_toml_passes_the_bridges_own_validation(
    toml: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in env_names(toml):
        monkeypatch.setenv(name, "x" * 24)
    monkeypatch.setenv("CASEBRIDGE_DB_URL", "postgresql://casebridge:pw@postgres/casebridge")
    bridge = Bridge.from_config(DEPLOY / "casebridge.toml", strict=True)
    assert bridge.config.store.url is not None
    assert set(bridge.plugin_names()) >= {"creatio", "email", "sms"}


def test_every_secret_the_toml_reads_is_in_the_env_example(toml: dict[str, Any]) -> None:
    assert env_names(toml) <= set(env_example())
    url = env_example()["CASEBRIDGE_DB_URL"]
    assert url.startswith("postgresql://")
    assert f":{env_example()['POSTGRES_PASSWORD']}@" in url


def test_the_systemd_unit_runs_commands_casebridge_accepts() -> None:
    unit = configparser.ConfigParser(strict=True, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign] - systemd keys are case-sensitive
    unit.read_string((DEPLOY / "casebridge.service").read_text())
    assert unit.sections() == ["Unit", "Service", "Install"]
    service = unit["Service"]
    for key, command in (("ExecStartPre", "migrate"), ("ExecStart", "run")):
        program, *argv = shlex.split(service[key])
        assert program.endswith("/bin/casebridge")
        args = cli(argv)
        assert argv[0] == command and args.config == Path(CONFIG_IN_IMAGE)
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    assert "/var/lib/casebridge" in service["ReadWritePaths"].split()


def test_the_dockerfile_installs_the_project_and_runs_the_bridge(
    dockerfile: list[tuple[str, str]], toml: dict[str, Any]
) -> None:
    known = {"FROM", "RUN", "COPY", "WORKDIR", "USER", "VOLUME", "EXPOSE", "HEALTHCHECK",
             "ENTRYPOINT", "CMD", "ENV", "ARG", "LABEL"}
    assert dockerfile[0][0] == "FROM"
    assert {op for op, _ in dockerfile} <= known
    for op, rest in dockerfile:
        if op == "COPY":
            *sources, _target = rest.split()
            assert all((ROOT / source).exists() for source in sources), rest
    ops = dict(dockerfile)
    entrypoint, cmd = json.loads(ops["ENTRYPOINT"]), json.loads(ops["CMD"])
    assert entrypoint == ["casebridge"]
    assert cli(cmd).config == Path(CONFIG_IN_IMAGE) and cmd[0] == "run"
    exposed = {int(port) for port in ops["EXPOSE"].split()}
    assert exposed == {toml["http"]["port"], toml["plugins"]["email"]["listen_port"]}
    assert "/var/lib/casebridge" in ops["VOLUME"] == f'["{toml["bridge"]["data_dir"]}"]'
    health = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", ops["HEALTHCHECK"])
    assert health is not None and int(health[1]) == toml["http"]["port"]
    assert health[2] in app_paths()


def app_paths() -> set[str]:
    bridge = Bridge.from_config(ROOT / "config.example.toml")
    return {getattr(route, "path", "") for route in create_app(bridge).routes}


def test_compose_runs_two_runners_on_postgres_behind_the_balancer(
    compose: dict[str, Any], toml: dict[str, Any]
) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "runner1", "runner2", "lb"}
    runners = [services["runner1"], services["runner2"]]
    data_dir = toml["bridge"]["data_dir"]
    for runner in runners:
        mounts = dict(m.rsplit(":", 1)[0].split(":", 1) if m.endswith(":ro") else m.split(":", 1)
                      for m in runner["volumes"])
        assert mounts["data"] == data_dir, "runners share one blob folder"
        assert mounts["./casebridge.toml"] == CONFIG_IN_IMAGE
        assert runner["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert cli(services["migrate"]["command"])
    assert services["migrate"]["command"][0] == "migrate"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["postgres"]["environment"]["POSTGRES_USER"] == "casebridge"
    published = {int(p.split(":")[1]) for p in services["lb"]["ports"]}
    assert published == {toml["http"]["port"], toml["plugins"]["email"]["listen_port"]}


def test_the_balancer_sends_smtp_and_http_to_every_runner(
    compose: dict[str, Any], toml: dict[str, Any]
) -> None:
    sections: dict[str, list[str]] = {}
    current = ""
    for line in (DEPLOY / "haproxy.cfg").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            current = line.strip()
            sections[current] = []
        else:
            sections[current].append(line.strip())
    runners = {name for name in compose["services"] if name.startswith("runner")}
    ports = {"runners_smtp": toml["plugins"]["email"]["listen_port"],
             "runners_http": toml["http"]["port"]}
    for backend, port in ports.items():
        servers = [line.split() for line in sections[f"backend {backend}"]
                   if line.startswith("server ")]
        assert {s[1] for s in servers} == runners
        assert {s[2] for s in servers} == {f"{name}:{port}" for name in runners}
    assert "option httpchk GET /readyz" in sections["backend runners_http"]
    binds = {line for lines in sections.values() for line in lines if line.startswith("bind")}
    assert binds == {f"bind :{port}" for port in ports.values()}
