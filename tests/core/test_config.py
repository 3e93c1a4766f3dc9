"""The TOML loader: strict about keys and types, precise in its errors, silent about secrets."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
from casebridge import config
from casebridge.errors import ConfigError
from casebridge.secrets import Secret
from casebridge.starter import starter_config

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Relay:
    host: str
    port: int = 25


@dataclass(frozen=True)
class Sample:
    url: str
    retries: int = 3
    timeout: float = 1.5
    mode: Literal["login", "oauth"] = "login"
    password: Secret | None = None
    tags: list[str] = field(default_factory=list)
    origins: dict[str, str] = field(default_factory=dict)
    relay: Relay | None = None

    def __post_init__(self) -> None:
        if self.mode == "oauth" and self.password is not None:
            raise ValueError("oauth takes no password")


def build(table: dict, tmp_path: Path = Path("/etc/casebridge.toml")) -> Sample:
    return config.build(Sample, table, path=tmp_path, where="plugins.sample")


def test_builds_every_supported_type() -> None:
    built = build({"url": "u", "retries": 5, "timeout": 2, "mode": "oauth", "tags": ["a"],
                   "origins": {"email": "x"}, "relay": {"host": "h"}})
    assert built == Sample("u", 5, 2.0, "oauth", None, ["a"], {"email": "x"}, Relay("h", 25))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "[plugins.sample] url: missing required key (a string)"),
        ({"url": "u", "colour": "red"}, "[plugins.sample] colour: unknown key"),
        ({"url": 3}, "[plugins.sample] url: expected a string, got an integer"),
        ({"url": "u", "retries": "3"},
         "[plugins.sample] retries: expected an integer, got a string"),
        ({"url": "u", "retries": True}, "retries: expected an integer, got a boolean"),
        ({"url": "u", "mode": "basic"}, "mode: expected one of 'login', 'oauth', got 'basic'"),
        ({"url": "u", "tags": ["a", 1]}, "[plugins.sample] tags[1]: expected a string"),
        ({"url": "u", "relay": {"port": 1}}, "[plugins.sample] relay.host: missing required key"),
        ({"url": "u", "relay": "h"}, "relay: expected a table, got a string"),
        ({"url": "u", "mode": "oauth", "password": "p"},
         "[plugins.sample]: oauth takes no password"),
    ],
)
def test_errors_name_file_key_and_expectation(table: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build(table)
    assert str(caught.value).startswith("/etc/casebridge.toml: ")
    assert message in str(caught.value)


def test_secrets_from_env_and_file_never_print(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CB_TEST_SECRET", "hunter2-env")
    (tmp_path / "pw").write_text("hunter2-file\n")
    cfg = tmp_path / "c.toml"
    from_env = build({"url": "u", "password": {"env": "CB_TEST_SECRET"}}, cfg)
    from_file = build({"url": "u", "password": {"file": "pw"}}, cfg)
    assert from_env.password.reveal() == "hunter2-env"
    assert from_file.password.reveal() == "hunter2-file"
    for built in (from_env, from_file):
        assert "hunter2" not in repr(built) and "hunter2" not in str(built.password)


def test_a_bad_secret_is_reported_without_its_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        build({"url": "u", "password": {"env": "CB_SURELY_UNSET_VARIABLE"}})
    assert "CB_SURELY_UNSET_VARIABLE is not set" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        build({"url": "u", "password": 123456789})
    assert "123456789" not in str(caught.value)


def test_load_rejects_unknown_sections_and_bad_toml(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[brigde]\ncrm = 'x'\n")
    with pytest.raises(ConfigError, match=r"unknown section \[brigde\]"):
        config.load(path)
    path.write_text("[bridge\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(path)
    with pytest.raises(ConfigError, match="no such file"):
        config.load(tmp_path / "missing.toml")


def test_core_sections_are_checked_at_load(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[http]\nport = 'eighty'\n")
    with pytest.raises(ConfigError, match=r"\[http\] port: expected an integer, got a string"):
        config.load(path)


def test_enabled_plugins_come_from_the_toml(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[bridge]\ncrm = 'jsonl'\nchannels = ['loop']\nplugins = ['ai']\n")
    assert config.load(path).enabled == ["jsonl", "loop", "ai", "defaults"]


def test_example_config_is_the_starter_config() -> None:
    example = tomllib.loads((ROOT / "config.example.toml").read_text())
    assert example == starter_config()
