"""What a newcomer met on the command line: a busy port, session id prefixes, the list's
header, a quiet `check`, `outbox list | head`."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from casebridge import cli
from casebridge.idprefix import AmbiguousPrefix, NoMatch, resolve_prefix
from casebridge.model import Contact, Session, SessionStatus
from casebridge.ports import ListenSetting, listen_settings, port_in_use_message
from casebridge.store import NewJob
from casebridge.store.sqlite import SqliteStore
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]

IDS = [
    "a1b2c3d4-0000-4000-8000-000000000001",
    "a1b2ffff-0000-4000-8000-000000000002",
    "c0ffee00-0000-4000-8000-000000000003",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PORT_LINE = re.compile(r"^(\s*[a-z_]*port\s*=\s*)(\d+)", re.MULTILINE)


def example_config(root: Path, *, http_port: int, smtp_port: int) -> Path:
    """config.example.toml with its data kept in ``root`` and every fixed port moved: the
    HTTP and SMTP ports to those given, any other (a sandbox's) to a free one. One port
    number keeps one replacement, so settings that name the same port still agree."""
    text = (ROOT / "config.example.toml").read_text()
    moved = {8080: http_port, 2525: smtp_port}

    def move(found: re.Match[str]) -> str:
        old = int(found.group(2))
        if old == 0:  # the OS picks already
            return found.group(0)
        return f"{found.group(1)}{moved.setdefault(old, free_port())}"

    text = PORT_LINE.sub(move, text)
    assert f"port = {http_port}" in text and f"listen_port = {smtp_port}" in text
    path = root / "casebridge.toml"
    path.write_text(text)
    return path


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, int]]:
    """A port somebody else already listens on."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        yield sock, int(sock.getsockname()[1])
    finally:
        sock.close()


def run_bridge(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "casebridge.cli", "run", "--config", str(config)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("casebridge:")]


@pytest.mark.slow
def test_a_busy_http_port_is_one_line_naming_the_setting(tmp_path: Path, listener) -> None:
    _, busy_port = listener
    config = example_config(tmp_path, http_port=busy_port, smtp_port=free_port())
    result = run_bridge(config)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    [line] = error_lines(result.stderr)
    assert f"port {busy_port} on 127.0.0.1 is in use" in line
    assert "change [http] port" in line and str(config) in line


@pytest.mark.slow
def test_a_busy_smtp_port_is_one_line_naming_the_setting(tmp_path: Path, listener) -> None:
    _, busy_port = listener
    config = example_config(tmp_path, http_port=free_port(), smtp_port=busy_port)
    result = run_bridge(config)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr
    [line] = error_lines(result.stderr)
    assert f"port {busy_port} on 127.0.0.1 is in use" in line
    assert "change [plugins.email] listen_port" in line


def test_listen_settings_name_the_http_port_and_each_plugins_port_keys() -> None:
    from dataclasses import dataclass

    @dataclass
    class Mail:
        listen_host: str = "0.0.0.0"
        listen_port: int = 2525
        relay_timeout: float = 3.0

    @dataclass
    class Sms:
        sandbox_port: int = 0  # the OS picks: nothing to name

    found = listen_settings("127.0.0.1", 8080, {"email": Mail(), "sms": Sms(), "x": None})
    assert found == [
        ListenSetting("[http] port", "127.0.0.1", 8080),
        ListenSetting("[plugins.email] listen_port", "0.0.0.0", 2525),
    ]


@given(
    st.lists(
        st.builds(
            ListenSetting,
            st.from_regex(r"\[[a-z.]+\] [a-z_]+", fullmatch=True),
            st.just("127.0.0.1"),
            st.integers(1, 65535),
        ),
        max_size=3,
    ),
    st.text(),
)
def test_port_in_use_message_is_one_line_naming_every_port(taken, detail) -> None:
    detail = " ".join(detail.split())
    message = port_in_use_message(taken, "c.toml", detail)
    assert "\n" not in message
    for setting in taken:
        assert f"port {setting.port} " in message and f"change {setting.key}" in message
    if not taken:
        assert message == f"cannot start: {detail}"


# -- session id prefixes --------------------------------------------------------------------


def test_resolve_prefix_takes_a_unique_start_refuses_an_ambiguous_one() -> None:
    assert resolve_prefix("c0", IDS) == IDS[2]
    assert resolve_prefix(IDS[0], IDS) == IDS[0]
    with pytest.raises(AmbiguousPrefix) as info:
        resolve_prefix("a1b2", IDS)
    assert info.value.candidates == IDS[:2]
    assert f"matches {IDS[0]}, {IDS[1]};" in str(info.value)
    with pytest.raises(NoMatch, match="no session ff"):
        resolve_prefix("ff", IDS)
    with pytest.raises(NoMatch, match="give a session id"):
        resolve_prefix(" ", IDS)
    # The lookup stopped early: one match shown is still not proof of uniqueness.
    with pytest.raises(AmbiguousPrefix, match="and more"):
        resolve_prefix("c0", IDS[2:], more=True)


@given(
    st.lists(
        st.text("0123456789abcdef-", min_size=1, max_size=12), min_size=1, max_size=8, unique=True
    ),
    st.data(),
)
def test_resolve_prefix_answers_the_only_match_or_refuses(ids, data) -> None:
    target = data.draw(st.sampled_from(ids))
    prefix = target[: data.draw(st.integers(1, len(target)))]
    matching = sorted(i for i in ids if i.startswith(prefix))
    if prefix in ids or len(matching) == 1:
        assert resolve_prefix(prefix, ids) == (prefix if prefix in ids else matching[0])
    else:
        with pytest.raises(AmbiguousPrefix) as info:
            resolve_prefix(prefix, ids)
        assert info.value.candidates == matching
        assert all(c in str(info.value) for c in matching[:5])


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    """The example configuration over a store holding three sessions (one handed off)."""
    config = example_config(tmp_path, http_port=free_port(), smtp_port=free_port())

    async def fill() -> None:
        async with SqliteStore(tmp_path / "var" / "casebridge.db") as store:
            contact = await store.create_contact(
                Contact(id="c1", name="Ann", emails=("ann@example.com",))
            )
            for n, sid in enumerate(IDS):
                status = SessionStatus.HANDED_OFF if n == 2 else SessionStatus.ASSISTANT
                await store.create_session(
                    Session(
                        id=sid,
                        channel="email",
                        contact=contact,
                        status=status,
                        channel_address="support@example.com",
                        subject=f"printer {n}",
                    )
                )
            await store.enqueue(
                [
                    NewJob(kind="inbound", payload={"n": n}, key=f"k{n:05}", order_key=f"o{n}")
                    for n in range(3000)
                ]
            )

    (tmp_path / "var").mkdir()
    anyio.run(fill)
    return config


def test_sessions_show_takes_a_unique_prefix(stored: Path, capsys) -> None:
    assert cli.main(["sessions", "show", "c0ff", "--config", str(stored)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"session {IDS[2]} (email, handed_off)")


def test_an_ambiguous_prefix_lists_the_candidates(stored: Path, capsys) -> None:
    assert cli.main(["sessions", "show", "A1B2", "--config", str(stored)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        f"casebridge: session prefix a1b2 is ambiguous: it matches {IDS[0]}, "
        f"{IDS[1]}; give more of the id"
    )
    assert cli.main(["handoff", "a1b2f", "--config", str(stored)]) == 0
    assert f"handoff of {IDS[1]} queued" in capsys.readouterr().out
    assert cli.main(["sessions", "close", "9", "--config", str(stored)]) == 1
    assert capsys.readouterr().err.strip() == "casebridge: no session 9"


def test_sessions_list_has_a_header_row(stored: Path, capsys) -> None:
    assert cli.main(["sessions", "list", "--config", str(stored)]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["SESSION", "CHANNEL", "STATUS", "CASE", "CONTACT"]
    assert sorted(r.split()[0] for r in rows) == IDS
    # The columns line up under their titles.
    assert all(r.index(" email ") + 1 == header.index("CHANNEL") for r in rows)
    assert cli.main(["sessions", "list", "--status", "closed", "--config", str(stored)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "no sessions closed\n"


def test_check_prints_only_its_report(tmp_path: Path) -> None:
    config = example_config(tmp_path, http_port=free_port(), smtp_port=free_port())
    result = subprocess.run(
        [sys.executable, "-m", "casebridge.cli", "check", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # The Creatio sandbox check signs in (an INFO line in a running bridge): not here.
    assert result.stderr == ""
    names = [line.split(": ", 1)[0] for line in result.stdout.splitlines()]
    assert set(names) >= {"creatio", "defaults", "email", "sms"}
    assert names == sorted(names), result.stdout


def test_outbox_list_into_a_closed_pipe_ends_quietly(stored: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "casebridge.cli",
            "outbox",
            "list",
            "--limit",
            "5000",
            "--config",
            str(stored),
        ],
        cwd=stored.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    # 3000 lines are far more than a pipe holds: the writer is blocked when we go away.
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141
    assert b"inbound" in first
    assert stderr == "", stderr
