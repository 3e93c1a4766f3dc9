"""Malformed MIME never crashes the SMTP server or the parser.

The hand-made corpus in ``hostile_corpus/`` and hypothesis mutations of valid messages (byte
flips, truncation, boundary damage, header garbage, deep nesting, splices) go over a raw SMTP
socket to the running bridge, bytes exactly as written (no line-ending repair, no size
option). Every one gets a proper SMTP answer; afterwards a normal mail still becomes a
session. The same inputs go through ``parse_email`` and the plugin's ingest path in-process.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from casebridge.bridge import Bridge
from casebridge.errors import PermanentError
from casebridge.model import RawInbound
from casebridge_email.envelope import envelope_fields
from casebridge_email.mime import ParsedEmail, parse_email
from deployment import SUPPORT, Deployment, free_port, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.bridges import install_jsonl, settle, write_config

CORPUS = sorted((Path(__file__).parent / "hostile_corpus").glob("*.eml"))
SENDER = b"Fuzz Customer <{sender}@customer.example>"

BASES = [
    b"From: " + SENDER + b"\r\nTo: support@example.com\r\nSubject: =?utf-8?q?Caf=C3=A9?=\r\n"
    b"Message-ID: <{sender}.1@customer.example>\r\nDate: Tue, 4 Mar 2025 12:00:00 -0500\r\n"
    b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n\r\n'
    b'--b1\r\nContent-Type: multipart/alternative; boundary="b2"\r\n\r\n'
    b"--b2\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: "
    b"quoted-printable\r\n\r\nCaf=C3=A9 order 42 is late.\r\n\r\nOn Mon, Bob wrote:\r\n> old\r\n"
    b"--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Caf\xc3\xa9 order 42</p>"
    b"<blockquote>old</blockquote>\r\n--b2--\r\n"
    b"--b1\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@y\r\nSubject: inner\r\n\r\ninner\r\n"
    b"--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; "
    b'filename="a.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQ=\r\n--b1--\r\n',
    b"From: " + SENDER + b"\r\nTo: support@example.com\r\nSubject: plain\r\n"
    b"Message-ID: <{sender}.2@customer.example>\r\n\r\nMy printer is broken.\r\n",
    b"From: " + SENDER + b"\r\nTo: support@example.com\r\nSubject: html\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: text/html; charset=windows-1252\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"PHA+SGVsbG8gPGI+d29ybGQ8L2I+PC9wPjxzY3JpcHQ+YWxlcnQoMSk8L3NjcmlwdD4=\r\n",
    b"From: " + SENDER + b"\r\nTo: support@example.com\r\nSubject: related\r\nMIME-Version: 1.0"
    b'\r\nContent-Type: multipart/related; boundary="r"\r\n\r\n--r\r\nContent-Type: text/html'
    b'\r\n\r\n<img src="cid:i1@x"> see the picture\r\n--r\r\nContent-Type: image/png\r\n'
    b"Content-ID: <i1@x>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--r--\r\n",
]


# -- a raw SMTP client: bytes go out exactly as given ----------------------------------------


class SmtpAnswerMissing(AssertionError):
    """The server closed the connection or sent something that is not an SMTP reply."""


def _reply(stream: Any) -> tuple[int, str]:
    lines = []
    while True:
        line = stream.readline(4096)
        if not line:
            raise SmtpAnswerMissing(f"connection closed after {lines!r}")
        if not re.match(rb"^[2-5]\d\d[ -]", line):
            raise SmtpAnswerMissing(f"not an SMTP reply: {line!r}")
        lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
        if line[3:4] == b" ":
            return int(line[:3]), "\n".join(lines)


def smtp_send_raw(port: int, data: bytes, sender: str = "fuzz@customer.example") -> tuple[int,
                                                                                          str]:
    """Send ``data`` as one message; the server's answer to the end of DATA (or to the first
    command it refused)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        stream = sock.makefile("rb")
        _reply(stream)
        for command, expected in ((b"EHLO fuzz.example", 250), (f"MAIL FROM:<{sender}>".encode(),
                                  250), (f"RCPT TO:<{SUPPORT}>".encode(), 250), (b"DATA", 354)):
            sock.sendall(command + b"\r\n")
            code, text = _reply(stream)
            if code != expected:
                return code, text
        # Dot-stuffing after every LF (a bare LF may end a line for the server) so that the
        # only end of data is ours.
        stuffed = re.sub(rb"(^|\n)\.", rb"\1..", data)
        ending = b".\r\n" if stuffed.endswith(b"\r\n") else b"\r\n.\r\n"
        sock.sendall(stuffed + ending)
        answer = _reply(stream)
        sock.sendall(b"QUIT\r\n")
        return answer


def assert_proper(d: Deployment, data: bytes, what: str) -> None:
    code, text = smtp_send_raw(d.smtp_port, data)
    # 451 is the server's answer to an exception while storing: for malformed input that
    # is a parser or ingest bug, not a transient fault.
    proper = code == 250 or 500 <= code < 600 or (400 <= code < 500 and code != 451)
    assert proper, (what, text, d.log("bridge")[-4000:])


# -- mutations ----------------------------------------------------------------------------


def _nest(data: bytes, depth: int) -> bytes:
    head, _, body = data.partition(b"\r\n\r\n")
    for level in range(depth):
        body = (b'Content-Type: multipart/mixed; boundary="n%d"\r\n\r\n--n%d\r\n' % (level, level)
                + body + b"\r\n--n%d--\r\n" % level)
    return head + b"\r\n" + body


@st.composite
def mutated_mail(draw: st.DrawFn) -> bytes:
    sender = draw(st.from_regex(r"[a-z]{4,10}", fullmatch=True)).encode()
    data = bytearray(draw(st.sampled_from(BASES)).replace(b"{sender}", sender))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "boundary", "header", "nest", "splice"]))
        if kind == "flip":
            for _ in range(draw(st.integers(1, 8))):
                data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del data[draw(st.integers(1, len(data))):]
        elif kind == "boundary":
            damage = draw(st.sampled_from([b"", b"-", b"--", b"b1--", b"\x00", b'"', b"b9"]))
            data = bytearray(re.sub(rb"--(b1|b2|r)\b", b"--" + damage, bytes(data),
                                    count=draw(st.integers(0, 3))))
        elif kind == "header":
            garbage = draw(st.binary(max_size=200))
            name = draw(st.sampled_from([b"Content-Type", b"From", b"Content-Transfer-Encoding",
                                         b"Content-Disposition", b"X-Junk", b""]))
            at = data.find(b"\r\n") + 2
            data[at:at] = name + b": " + garbage + b"\r\n"
        elif kind == "nest":
            data = bytearray(_nest(bytes(data), draw(st.integers(1, 60))))
        else:
            other = draw(st.sampled_from(BASES))
            start = draw(st.integers(0, len(other) - 1))
            at = draw(st.integers(0, len(data)))
            data[at:at] = other[start:start + draw(st.integers(1, 300))]
        if not data:
            data = bytearray(b"x")
    return bytes(data)


# -- over SMTP, to the running bridge -------------------------------------------------------


def sessions_from(d: Deployment, address: str) -> list[str]:
    listed = d.cli("sessions", "list", "--limit", "1000")
    assert listed.returncode == 0, listed.stderr
    return [line for line in listed.stdout.splitlines() if line.endswith(address)]


def test_the_hand_made_corpus_gets_proper_answers(deployment: Deployment) -> None:
    assert len(CORPUS) >= 20
    for path in CORPUS:
        assert_proper(deployment, path.read_bytes(), path.name)
    assert deployment.processes["bridge"].poll() is None


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_mail())
def test_mutated_mail_gets_proper_answers(deployment: Deployment, data: bytes) -> None:
    assert_proper(deployment, data, repr(data[:200]))


def test_the_server_still_takes_mail_after_the_fuzzing(deployment: Deployment) -> None:
    # Runs after the two above (file order): the same running bridge.
    normal = (b"From: After Fuzz <after.fuzz@customer.example>\r\nTo: support@example.com\r\n"
              b"Subject: still there?\r\nMessage-ID: <after.fuzz@customer.example>\r\n\r\n"
              b"A normal message after the storm.\r\n")
    assert smtp_send_raw(deployment.smtp_port, normal)[0] == 250
    wait_for(lambda: sessions_from(deployment, "after.fuzz@customer.example"),
             what="the normal mail's session")
    assert deployment.processes["bridge"].poll() is None
    assert "could not store message" not in deployment.log("bridge")


# -- in-process: the parser and the plugin's ingest path ------------------------------------


def check_parsed(parsed: ParsedEmail, data: bytes) -> None:
    assert isinstance(parsed, ParsedEmail)
    assert parsed.size == len(data)
    assert all(isinstance(n, str) for n in parsed.notes)
    assert "\r" not in parsed.subject and "\n" not in parsed.subject


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_parse_email_reads_every_corpus_file(path: Path) -> None:
    data = path.read_bytes()
    check_parsed(parse_email(data), data)


@settings(max_examples=200, deadline=None)
@given(data=mutated_mail())
def test_parse_email_never_raises_on_mutations(data: bytes) -> None:
    check_parsed(parse_email(data), data)


@pytest.fixture
async def bridge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Bridge]:
    install_jsonl(monkeypatch, tmp_path)
    email = {"listen_host": "127.0.0.1", "listen_port": free_port(),
             "support_addresses": [SUPPORT], "rate_limit_messages": 10_000}
    path = write_config(tmp_path, bridge={"channels": ["email"]}, plugins={"email": email})
    opened = Bridge.from_config(path)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def receive(bridge: Bridge, data: bytes) -> None:
    # A clear refusal (PermanentError, SMTP 554) is a proper answer; anything else is not.
    with contextlib.suppress(PermanentError):
        await bridge.receive(RawInbound(
            channel="email", payload=data,
            fields=envelope_fields("fuzz@customer.example", (SUPPORT,))))


async def test_ingest_takes_every_corpus_file(bridge: Bridge) -> None:
    for path in CORPUS:
        await receive(bridge, path.read_bytes())
    await settle(bridge)
    assert await bridge.store.list_sessions()
    assert not (await bridge.store.job_counts()).get("dead")


@pytest.mark.anyio
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=mutated_mail())
async def test_ingest_never_fails_on_mutations(bridge: Bridge, data: bytes) -> None:
    await receive(bridge, data)
    await settle(bridge)
    assert not (await bridge.store.job_counts()).get("dead")
