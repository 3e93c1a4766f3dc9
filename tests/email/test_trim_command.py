"""``casebridge email trim``, driven through argparse as the CLI would."""

from __future__ import annotations

import argparse
from email.message import EmailMessage
from pathlib import Path

import pytest
from casebridge_email.trim_command import trim_commands

REPLY = "Yes, Tuesday works."
HEADER = "On Mon, Jan 6, 2025 at 9:14 AM Ann <ann@example.com> wrote:"


def _run(argv: list[str]) -> int:
    (command,) = trim_commands()
    assert command.path == ("email", "trim")
    parser = argparse.ArgumentParser(prog="casebridge email trim")
    command.configure(parser)
    result = command.run(parser.parse_args(argv))
    assert isinstance(result, int)
    return result


def _eml(tmp_path: Path, plain: str | None, html: str | None) -> Path:
    message = EmailMessage()
    message["From"] = "bob@example.com"
    message["To"] = "support@example.com"
    message["Subject"] = "Re: meeting"
    if plain is not None:
        message.set_content(plain)
    if html is not None:
        if plain is None:
            message.set_content(html, subtype="html")
        else:
            message.add_alternative(html, subtype="html")
    path = tmp_path / "reply.eml"
    path.write_bytes(bytes(message))
    return path


def test_plain_part_is_trimmed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = f"{REPLY}\n\nSent from my iPhone\n\n{HEADER}\n> Does Tuesday work?\n"
    path = _eml(tmp_path, body, "<p>ignored html</p>")
    assert _run([str(path)]) == 0
    assert capsys.readouterr().out == f"{REPLY}\n"


def test_keep_signature(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = f"{REPLY}\n\nSent from my iPhone\n\n{HEADER}\n> Does Tuesday work?\n"
    path = _eml(tmp_path, body, None)
    assert _run([str(path), "--keep-signature"]) == 0
    assert capsys.readouterr().out == f"{REPLY}\n\nSent from my iPhone\n"


def test_sign_off_stays_and_only_keep_signature_keeps_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = (
        f"{REPLY}\n\nViele Grüße\nTom\n-- \nTom Becker\nAcme GmbH\n\n"
        f"Von meinem iPhone gesendet\n\n{HEADER}\n> Does Tuesday work?\n"
    )
    path = _eml(tmp_path, body, None)
    assert _run([str(path)]) == 0
    assert capsys.readouterr().out == f"{REPLY}\n\nViele Grüße\nTom\n"
    assert _run([str(path), "--keep-signature"]) == 0
    assert capsys.readouterr().out == (
        f"{REPLY}\n\nViele Grüße\nTom\n--\nTom Becker\nAcme GmbH\n\nVon meinem iPhone gesendet\n"
    )


def test_html_only_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = f"<div>{REPLY}</div><div>{HEADER.replace('<', '&lt;')}</div><blockquote>old</blockquote>"
    path = _eml(tmp_path, None, html)
    assert _run([str(path)]) == 0
    assert capsys.readouterr().out == f"{REPLY}\n"


def test_text_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "reply.txt"
    path.write_text(f"{REPLY}\n-- \nBob\n", encoding="utf-8")
    assert _run(["--text", str(path)]) == 0
    assert capsys.readouterr().out == f"{REPLY}\n"


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.eml"
    assert _run([str(missing)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err_lines = captured.err.strip().splitlines()
    assert len(err_lines) == 1
    assert str(missing) in err_lines[0]


def test_directory_is_unreadable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run([str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_message_without_text_part(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = EmailMessage()
    message["Subject"] = "scan"
    message.set_content(b"\x89PNG", maintype="image", subtype="png")
    path = tmp_path / "image.eml"
    path.write_bytes(bytes(message))
    assert _run([str(path)]) == 1
    assert "no text" in capsys.readouterr().err
