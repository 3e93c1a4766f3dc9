"""Send a composed message through the configured SMTP relay (aiosmtplib).

Outcomes are the outbox's error types: a 5xx answer is :class:`PermanentError` (with the
relay's code and text), a 4xx answer, a timeout or a lost connection :class:`TransientError`;
a timeout or lost connection after the message data went out is :class:`AmbiguousWriteError`
(the relay may have accepted it). The relay password never appears in an error.
"""

from __future__ import annotations

import copy
import logging
import ssl
from email.message import EmailMessage
from email.utils import getaddresses

import aiosmtplib
from casebridge.plugin import AmbiguousWriteError, PermanentError, TransientError

from .settings import RelaySettings

log = logging.getLogger(__name__)


async def send_email(
    message: EmailMessage,
    *,
    relay: RelaySettings,
    envelope_from: str | None = None,
    tls_context: ssl.SSLContext | None = None,
    local_hostname: str | None = None,
) -> None:
    """Send ``message`` to its To, Cc and Bcc recipients (Bcc is not transmitted).

    ``envelope_from`` is the MAIL FROM address (default: the From address); ``tls_context``
    overrides the relay's certificate checks (default: system CAs or ``relay.ca_file``).
    ``local_hostname`` is what EHLO says (default: the envelope sender's domain).
    """
    recipients = _recipients(message)
    sender = envelope_from if envelope_from is not None else _first(message, "From")
    if not recipients:
        raise PermanentError("the message has no recipients")
    if "Bcc" in message:
        message = copy.deepcopy(message)
        del message["Bcc"]
    data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    where = f"relay {relay.host}:{relay.port}"
    client = aiosmtplib.SMTP(
        hostname=relay.host,
        port=relay.port,
        timeout=relay.timeout,
        use_tls=relay.tls == "tls",
        start_tls=relay.tls == "starttls",
        tls_context=tls_context,
        cert_bundle=relay.ca_file or None,
        local_hostname=local_hostname or sender.rpartition("@")[2] or "localhost",
    )
    stage = "connect"
    try:
        await client.connect()
        if relay.username and relay.password is not None:
            stage = "login"
            await client.login(relay.username, relay.password.reveal())
        stage = "MAIL FROM"
        options, encoding = _envelope_options(client, [sender, *recipients], where)
        await client.mail(sender, options=options, encoding=encoding)
        for recipient in recipients:
            stage = f"RCPT TO {recipient}"
            await client.rcpt(recipient, encoding=encoding)
        stage = "DATA"
        await client.data(data)
        await _quit(client)
    except aiosmtplib.SMTPResponseException as exc:
        raise _answer_error(where, stage, exc.code, exc.message) from None
    except (aiosmtplib.SMTPTimeoutError, TimeoutError) as exc:
        raise _lost(where, stage, f"timed out ({type(exc).__name__})") from None
    except aiosmtplib.SMTPServerDisconnected as exc:
        raise _lost(where, stage, f"connection lost: {exc}") from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise TransientError(f"{where}: {stage} failed: {type(exc).__name__}: {exc}") from None
    finally:
        if client.is_connected:
            client.close()
    log.info("sent %s via %s", message.get("Message-ID", ""), where)


def _answer_error(where: str, stage: str, code: int, text: str) -> Exception:
    text = " ".join(str(text).split())
    detail = f"{where} answered {code} {text} to {stage}"
    if 500 <= code < 600:
        return PermanentError(detail)
    return TransientError(detail)


def _lost(where: str, stage: str, what: str) -> Exception:
    if stage == "DATA":
        return AmbiguousWriteError(f"{where}: {what} after the message data was sent")
    return TransientError(f"{where}: {what} during {stage}")


async def _quit(client: aiosmtplib.SMTP) -> None:
    # The message is accepted by now; a relay that fumbles QUIT changes nothing.
    try:
        await client.quit()
    except (aiosmtplib.SMTPException, OSError):
        client.close()


def _envelope_options(
    client: aiosmtplib.SMTP, addresses: list[str], where: str
) -> tuple[list[str], str]:
    if all(a.isascii() for a in addresses):
        return [], "ascii"
    if not client.supports_extension("smtputf8"):
        raise PermanentError(f"{where} does not support SMTPUTF8, needed for a non-ASCII address")
    return ["SMTPUTF8"], "utf-8"


def _recipients(message: EmailMessage) -> list[str]:
    values = [str(v) for name in ("To", "Cc", "Bcc") for v in message.get_all(name, [])]
    return list(dict.fromkeys(addr for _, addr in getaddresses(values) if "@" in addr))


def _first(message: EmailMessage, name: str) -> str:
    found = [addr for _, addr in getaddresses([str(message.get(name, ""))]) if "@" in addr]
    if not found:
        raise PermanentError(f"the message has no {name} address for the envelope")
    return found[0]
