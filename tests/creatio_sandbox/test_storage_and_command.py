"""SQLite storage survives a restart; the CLI command builds the right settings."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from casebridge_creatio.sandbox_command import (
    configure_parser,
    sandbox_commands,
    settings_from_args,
)
from conftest import StartSandbox


def test_sqlite_data_survives_a_restart(start_sandbox: StartSandbox, tmp_path: Path) -> None:
    db = tmp_path / "sandbox.db"
    first = start_sandbox(database=db)
    client = first.login()
    case = client.post("/0/odata/Case", json={"Subject": "kept"}).json()
    client.close()
    first.sandbox.store.close()

    second = start_sandbox(database=db)
    client = second.login()
    again = client.get(f"/0/odata/Case({case['Id']})").json()
    assert again["Subject"] == "kept"
    nxt = client.post("/0/odata/Case", json={"Subject": "next"}).json()
    assert int(nxt["Number"][2:]) == int(case["Number"][2:]) + 1
    assert len(client.get("/0/odata/CaseStatus").json()["value"]) == 7
    client.close()


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return parser.parse_args(argv)


def test_command_path_and_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    (command,) = sandbox_commands()
    assert command.path == ("sandbox", "creatio")
    settings = settings_from_args(parse("--port", "5000", "--db", "x.db", "--webhook",
                                        "http://127.0.0.1:8000/hook", "--webhook-secret", "s"))
    assert settings.database == Path("x.db") and settings.webhook_url.endswith("/hook")
    assert settings.webhook_secret is not None and settings.webhook_secret.reveal() == "s"
    monkeypatch.setenv("HOOK_SECRET", "from-env")
    from_env = settings_from_args(parse("--port", "1", "--webhook-secret-env", "HOOK_SECRET"))
    assert from_env.webhook_secret is not None
    assert from_env.webhook_secret.reveal() == "from-env"
    with pytest.raises(ValueError, match="--webhook"):
        settings_from_args(parse("--port", "1", "--webhook", "ftp://x"))
    with pytest.raises(ValueError, match="NOPE_NOT_SET"):
        settings_from_args(parse("--port", "1", "--webhook-secret-env", "NOPE_NOT_SET"))
