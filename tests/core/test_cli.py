"""The casebridge command: one clear line on errors, plugins' subcommands, init, check."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from casebridge import cli
from casebridge.bridge import Bridge
from casebridge.starter import starter_config
from support.bridges import install_jsonl, write_config

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "casebridge.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_plugins_lists_the_built_in_plugins() -> None:
    result = run_cli("plugins")
    for name in ("email", "sms", "creatio", "defaults"):
        assert f"\n{name} " in "\n" + result.stdout, result.stdout + result.stderr
    assert "casebridge_creatio.plugin:CreatioPlugin" in result.stdout


def test_init_writes_the_starter_config_and_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    target = tmp_path / "casebridge.toml"
    assert cli.main(["init", str(target)]) == 0
    assert tomllib.loads(target.read_text()) == starter_config()
    assert cli.main(["init", str(target)]) == 1
    assert "exists; pass --force" in capsys.readouterr().err


def test_errors_are_one_line_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[http]\nport = 'x'\n")
    result = run_cli("check", "--config", str(bad))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "[http] port: expected an integer, got a string" in result.stderr
    assert "Traceback" not in result.stderr


def test_hook_cli_commands_become_subcommands(capsys) -> None:
    from casebridge.contributions import Command

    seen = []
    commands = [*cli.core_commands(),
                Command(("sandbox", "demo"), "a demo", lambda p: p.add_argument("--n", type=int),
                        lambda args: seen.append(args.n) or 0)]
    parser = cli.build_parser(commands)
    args = parser.parse_args(["sandbox", "demo", "--n", "7"])
    assert args._run(args) == 0 and seen == [7]
    # The built-in plugins contribute theirs through the same hook.
    paths = {c.path for c in cli.plugin_commands()}
    assert {("email", "trim"), ("sms", "segments"), ("sandbox", "sms")} <= paths


def test_hook_config_section_and_configure_reach_the_plugin(tmp_path, monkeypatch) -> None:
    install_jsonl(monkeypatch, tmp_path)
    from support.plugins import LoopChannel

    path = write_config(tmp_path)
    bridge = Bridge.from_config(path, plugins={"loop": LoopChannel()})
    plugin = bridge.pm.get_plugin("jsonl")
    assert plugin.path == bridge.data_dir / "cases.jsonl"
    assert bridge.settings("jsonl").webhook_token.reveal() == "jsonl-hook-token"


def test_hook_configure_refuses_a_section_that_breaks_the_schema(tmp_path, monkeypatch) -> None:
    install_jsonl(monkeypatch, tmp_path)
    from support.plugins import LoopChannel

    path = write_config(tmp_path)
    text = path.read_text().replace('path = "cases.jsonl"', 'path = "c.jsonl"\ncolour = 1')
    path.write_text(text)
    with pytest.raises(Exception, match=r"\[plugins.jsonl\] colour: unknown key"):
        Bridge.from_config(path, plugins={"loop": LoopChannel()})


async def test_hook_check_reports_each_plugin(tmp_path, monkeypatch, capsys) -> None:
    install_jsonl(monkeypatch, tmp_path)
    from support.plugins import LoopChannel

    path = write_config(tmp_path)
    bridge = Bridge.from_config(path, plugins={"loop": LoopChannel()})
    result = await bridge.hooks.check("jsonl")
    assert result.ok and result.detail == "Active"
    bridge.pm.get_plugin("jsonl").path = tmp_path / "no-such-dir" / "x" / "c.jsonl"
    (tmp_path / "no-such-dir").write_text("a file where a folder should be")
    result = await bridge.hooks.check("jsonl")
    assert not result.ok and "cannot write" in result.detail


def test_check_against_the_example_config(tmp_path: Path) -> None:
    # The example runs on embedded defaults: every plugin must say Active.
    config = tmp_path / "config.toml"
    text = (ROOT / "config.example.toml").read_text()
    config.write_text(text)
    result = run_cli("check", "--config", str(config), cwd=tmp_path)
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert set(lines) >= {"email", "sms", "creatio", "defaults"}, result.stdout + result.stderr
    assert all(v.startswith("Active") for v in lines.values()), result.stdout
    assert result.returncode == 0
