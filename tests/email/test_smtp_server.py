"""SmtpIngest against smtplib on a loopback port: durability before 250, no relay, SIZE,
failures, STARTTLS and AUTH."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from casebridge.errors import PermanentError
from casebridge.secrets import Secret
from casebridge_email.smtp_server import IngestEnvelope, SmtpIngest, password_checker
from support.certs import self_signed

pytestmark = pytest.mark.anyio

MESSAGE = b"From: ann@customer.example\r\nTo: support@example.com\r\nSubject: hi\r\n\r\nHello\r\n"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def accepts(address: str) -> bool:
    return address.lower() in {"support@example.com", "help@example.com"}


@asynccontextmanager
async def serving(
    on_message: Callable[[IngestEnvelope], Awaitable[None]], **kwargs: object
) -> AsyncIterator[int]:
    options: dict[str, object] = {"max_size": 10_000, "hostname": "bridge.test", **kwargs}
    ingest = SmtpIngest(
        host="127.0.0.1",
        port=0,
        accepts=accepts,
        on_message=on_message,
        **options,  # type: ignore[arg-type]
    )
    async with anyio.create_task_group() as tg:
        port = await tg.start(ingest.run)
        yield port
        tg.cancel_scope.cancel()


def client(port: int) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=30)


async def test_250_only_after_on_message_returned_and_exactly_once() -> None:
    received: list[IngestEnvelope] = []
    entered, release = anyio.Event(), anyio.Event()
    answers: list[dict[str, tuple[int, bytes]]] = []

    async def on_message(envelope: IngestEnvelope) -> None:
        received.append(envelope)
        entered.set()
        await release.wait()

    def send(port: int) -> None:
        with client(port) as smtp:
            answers.append(
                smtp.sendmail(
                    "ann@customer.example", ["Support@example.com", "help@example.com"], MESSAGE
                )
            )

    async with serving(on_message) as port, anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, send, port)
        await entered.wait()
        assert answers == []  # the client is still waiting for its answer
        release.set()
    assert answers == [{}]
    (envelope,) = received
    assert envelope.mail_from == "ann@customer.example"
    assert envelope.rcpt_tos == ("Support@example.com", "help@example.com")
    assert envelope.data.replace(b"\r\n", b"\n") == MESSAGE.replace(b"\r\n", b"\n")
    assert envelope.peer.startswith("127.0.0.1:")


async def test_relay_is_refused_with_550() -> None:
    received: list[IngestEnvelope] = []

    async def on_message(envelope: IngestEnvelope) -> None:
        received.append(envelope)

    def send(port: int) -> None:
        with client(port) as smtp:
            smtp.sendmail("spammer@evil.example", ["victim@elsewhere.example"], MESSAGE)

    async with serving(on_message) as port:
        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            await anyio.to_thread.run_sync(send, port)
    ((code, text),) = caught.value.recipients.values()
    assert code == 550 and b"no relay" in text
    assert received == []


async def test_mixed_recipients_only_ours_are_kept() -> None:
    received: list[IngestEnvelope] = []

    async def on_message(envelope: IngestEnvelope) -> None:
        received.append(envelope)

    def send(port: int) -> dict[str, tuple[int, bytes]]:
        with client(port) as smtp:
            return smtp.sendmail("a@b.example", ["support@example.com", "x@other.example"], MESSAGE)

    async with serving(on_message) as port:
        refused = await anyio.to_thread.run_sync(send, port)
    assert list(refused) == ["x@other.example"] and refused["x@other.example"][0] == 550
    assert received[0].rcpt_tos == ("support@example.com",)


async def test_size_is_advertised_and_enforced_both_ways() -> None:
    received: list[IngestEnvelope] = []

    async def on_message(envelope: IngestEnvelope) -> None:
        received.append(envelope)

    big = MESSAGE + (b"x" * 70 + b"\r\n") * 30

    def declared(port: int) -> None:
        with client(port) as smtp:
            smtp.ehlo()
            assert smtp.esmtp_features["size"] == "1000"
            smtp.sendmail("a@b.example", ["support@example.com"], big)  # sends SIZE=

    def undeclared(port: int) -> tuple[int, bytes]:
        with client(port) as smtp:
            smtp.ehlo()
            assert smtp.mail("a@b.example")[0] == 250
            assert smtp.rcpt("support@example.com")[0] == 250
            return smtp.data(big)

    async with serving(on_message, max_size=1000) as port:
        with pytest.raises(smtplib.SMTPSenderRefused) as caught:
            await anyio.to_thread.run_sync(declared, port)
        assert caught.value.smtp_code == 552
        code, _ = await anyio.to_thread.run_sync(undeclared, port)
        assert code == 552
    assert received == []


@pytest.mark.parametrize(
    ("failure", "code", "text"),
    [
        (RuntimeError("database is locked"), 451, b"try again later"),
        (OSError(28, "No space left on device"), 451, b"try again later"),
        (PermanentError("message\r\nrefused: it is a duplicate\u2122"), 554, b"refused: it is a"),
    ],
)
async def test_failures_map_to_451_and_554(failure: Exception, code: int, text: bytes) -> None:
    calls = 0

    async def on_message(envelope: IngestEnvelope) -> None:
        nonlocal calls
        calls += 1
        raise failure

    def send(port: int) -> None:
        with client(port) as smtp:
            smtp.sendmail("a@b.example", ["support@example.com"], MESSAGE)

    async with serving(on_message) as port:
        with pytest.raises(smtplib.SMTPDataError) as caught:
            await anyio.to_thread.run_sync(send, port)
    assert caught.value.smtp_code == code
    assert text in caught.value.smtp_error
    assert b"\r" not in caught.value.smtp_error and b"database" not in caught.value.smtp_error
    assert calls == 1


async def test_null_sender_is_accepted_as_empty() -> None:
    received: list[IngestEnvelope] = []

    async def on_message(envelope: IngestEnvelope) -> None:
        received.append(envelope)

    def send(port: int) -> None:
        with client(port) as smtp:
            smtp.sendmail("<>", ["support@example.com"], MESSAGE)

    async with serving(on_message) as port:
        await anyio.to_thread.run_sync(send, port)
    assert received[0].mail_from == ""


async def test_stops_cleanly_with_a_client_connected() -> None:
    async def on_message(envelope: IngestEnvelope) -> None:
        raise AssertionError("no message expected")

    ingest = SmtpIngest(
        host="127.0.0.1",
        port=0,
        accepts=accepts,
        max_size=100,
        on_message=on_message,
        hostname="bridge.test",
    )
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            port = await tg.start(ingest.run)
            stream = await anyio.connect_tcp("127.0.0.1", port)
            assert (await stream.receive()).startswith(b"220 bridge.test")
            tg.cancel_scope.cancel()
    with anyio.fail_after(30), pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
        while True:  # the server closed our connection: the stream ends
            await stream.receive()
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", port)
    await stream.aclose()


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = self_signed(tmp_path)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))
    return server, trusting


async def test_starttls_required_and_auth(tls: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    server_ctx, client_ctx = tls
    received: list[IngestEnvelope] = []

    async def on_message(envelope: IngestEnvelope) -> None:
        received.append(envelope)

    def without_tls(port: int) -> tuple[int, bytes]:
        with client(port) as smtp:
            smtp.ehlo()
            assert "starttls" in smtp.esmtp_features
            return smtp.mail("a@b.example")

    def wrong_password(port: int) -> None:
        with client(port) as smtp:
            smtp.starttls(context=client_ctx)
            smtp.login("forwarder", "wrong")

    def no_login(port: int) -> tuple[int, bytes]:
        with client(port) as smtp:
            smtp.starttls(context=client_ctx)
            smtp.ehlo()
            return smtp.mail("a@b.example")

    def good(port: int) -> None:
        with client(port) as smtp:
            smtp.starttls(context=client_ctx)
            smtp.login("forwarder", "s3cret-pw")
            smtp.sendmail("a@b.example", ["support@example.com"], MESSAGE)

    checker = password_checker("forwarder", Secret("s3cret-pw"))
    async with serving(
        on_message, tls_context=server_ctx, require_starttls=True, authenticator=checker
    ) as port:
        code, _ = await anyio.to_thread.run_sync(without_tls, port)
        assert code == 530
        with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
            await anyio.to_thread.run_sync(wrong_password, port)
        assert caught.value.smtp_code == 535
        code, _ = await anyio.to_thread.run_sync(no_login, port)
        assert code == 530
        assert received == []
        await anyio.to_thread.run_sync(good, port)
    assert len(received) == 1


async def test_auth_without_tls_on_loopback_when_allowed() -> None:
    received: list[IngestEnvelope] = []

    async def on_message(envelope: IngestEnvelope) -> None:
        received.append(envelope)

    def send(port: int, password: str) -> None:
        with client(port) as smtp:
            smtp.login("forwarder", password)
            smtp.sendmail("a@b.example", ["support@example.com"], MESSAGE)

    checker = password_checker("forwarder", Secret("pw"))
    async with serving(on_message, authenticator=checker, auth_require_tls=False) as port:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            await anyio.to_thread.run_sync(send, port, "nope")
        await anyio.to_thread.run_sync(send, port, "pw")
    assert len(received) == 1


def test_require_starttls_needs_a_context() -> None:
    async def on_message(envelope: IngestEnvelope) -> None:
        return None

    with pytest.raises(ValueError, match="tls_context"):
        SmtpIngest(
            host="127.0.0.1",
            port=0,
            accepts=accepts,
            max_size=1,
            on_message=on_message,
            require_starttls=True,
        )


async def test_auth_is_advertised_only_when_logins_are_checked() -> None:
    async def on_message(envelope: IngestEnvelope) -> None:
        return None

    def features(port: int) -> dict[str, str]:
        with client(port) as smtp:
            smtp.ehlo()
            return dict(smtp.esmtp_features)

    async with serving(on_message, auth_require_tls=False) as port:
        open_features = await anyio.to_thread.run_sync(features, port)
    checker = password_checker("forwarder", Secret("pw"))
    async with serving(on_message, authenticator=checker, auth_require_tls=False) as port:
        auth_features = await anyio.to_thread.run_sync(features, port)
    assert "auth" not in open_features and "size" in open_features
    assert auth_features["auth"].split() == ["LOGIN", "PLAIN"]


def long_line_message(length: int) -> bytes:
    # One body line of ``length`` bytes (CRLF excluded), as some mail clients write HTML.
    return MESSAGE + b"<p>" + b"w" * (length - 3) + b"\r\n"


async def test_lines_over_rfc_5321s_limit_are_taken_up_to_the_configured_bound() -> None:
    received: list[IngestEnvelope] = []

    async def on_message(envelope: IngestEnvelope) -> None:
        received.append(envelope)

    def send(port: int, data: bytes) -> tuple[int, bytes]:
        with client(port) as smtp:
            smtp.ehlo()
            assert smtp.mail("a@b.example")[0] == 250
            assert smtp.rcpt("support@example.com")[0] == 250
            answer = smtp.data(data)
            # The connection stays usable after either answer.
            assert smtp.noop()[0] == 250
            return answer

    limit = 8192
    fits, over = long_line_message(5000), long_line_message(limit + 10)
    async with serving(on_message, max_size=100_000, max_line_length=limit) as port:
        code, text = await anyio.to_thread.run_sync(send, port, fits)
        assert code == 250, text
        code, text = await anyio.to_thread.run_sync(send, port, over)
    assert code == 552, text
    assert b"line longer than the 8192-byte limit" in text
    assert [e.data.replace(b"\r\n", b"\n") for e in received] == [fits.replace(b"\r\n", b"\n")]


async def test_default_line_bound_is_generous() -> None:
    received: list[IngestEnvelope] = []

    async def on_message(envelope: IngestEnvelope) -> None:
        received.append(envelope)

    def send(port: int) -> dict[str, tuple[int, bytes]]:
        with client(port) as smtp:
            return smtp.sendmail("a@b.example", ["support@example.com"],
                                 long_line_message(60_000))

    async with serving(on_message, max_size=100_000) as port:
        assert await anyio.to_thread.run_sync(send, port) == {}
    assert len(received) == 1 and b"w" * 59_000 in received[0].data


def test_line_bound_below_rfc_5321_is_refused() -> None:
    async def on_message(envelope: IngestEnvelope) -> None:
        pass

    with pytest.raises(ValueError, match="max_line_length"):
        SmtpIngest(host="127.0.0.1", port=0, accepts=accepts, max_size=1000,
                   max_line_length=80, on_message=on_message)
