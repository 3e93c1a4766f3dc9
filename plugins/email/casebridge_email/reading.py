"""The part of ``ingest`` that needs no plugin state: one received mail parsed, checked for
loops, its attachments stored and its message built. A module-level function of picklable
values, so the runner can run it in a worker process on another core
(``PluginContext.run_cpu``); the plugin then applies what needs its state (the flood limit,
bounces of its own replies).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from casebridge.plugin import Message, RawInbound

from .attachments import store_attachments
from .bounces import Bounce, read_bounce
from .envelope import envelope_recipients, envelope_sender
from .guards import loop_reason
from .inbound import to_message
from .mime import parse_email
from .settings import accepts_recipient

__all__ = ["MailRead", "ReadRules", "read_mail"]


@dataclass(frozen=True, slots=True)
class ReadRules:
    """What reading a mail needs of the plugin's settings (secrets: only the reply-token key,
    to verify tokens)."""

    support_addresses: tuple[str, ...]
    support_domains: tuple[str, ...]
    our_domains: tuple[str, ...]
    bounce_domain: str
    keep_signature: bool
    token_secret: bytes = field(repr=False)
    blob_folder: Path
    max_attachment_bytes: int
    max_attachments: int
    # Peers whose "envelope" is a mailbox's, not an SMTP client's (no null sender to read).
    mailbox_peer_prefix: str

    def accepts(self, recipient: str) -> bool:
        return accepts_recipient(recipient, self.support_addresses, self.support_domains)


@dataclass(frozen=True, slots=True)
class MailRead:
    """What a mail is: ``message`` (None when dropped, with ``dropped`` saying why, and
    ``bounce`` when it returns mail of ours), or, with ``parts_pending``, a mail whose
    attachments were not stored yet (``store_parts`` was False): read it again once its
    ``sender`` passed the flood limit."""

    message: Message | None = None
    dropped: str = ""
    bounce: Bounce | None = None
    sender: str = ""
    from_name: str = ""
    parts_pending: bool = False


def read_mail(raw: RawInbound, rules: ReadRules, store_parts: bool) -> MailRead:
    """Read one mail (see :class:`MailRead`). Writes attachments to ``rules.blob_folder``
    only when ``store_parts``; raises OSError when they cannot be written."""
    parsed = parse_email(raw.payload)
    # Only an SMTP envelope (it has recipients) can tell a null sender; a mailbox's
    # recipient is its configured address, with no envelope sender to go with it.
    smtp = bool(envelope_recipients(raw)) and not raw.peer.startswith(rules.mailbox_peer_prefix)
    reason = loop_reason(parsed, our_domains=list(rules.our_domains),
                         envelope_from=envelope_sender(raw) if smtp else None)
    if reason:
        return MailRead(dropped=reason, bounce=read_bounce(raw.payload, rules.bounce_domain))
    sender = (parsed.from_addr or envelope_sender(raw)).strip().lower()
    if "@" not in sender:
        return MailRead(dropped="no sender address (From and envelope are empty)")
    if parsed.attachments and not store_parts:
        return MailRead(sender=sender, from_name=parsed.from_name, parts_pending=True)
    attachments, notes = store_attachments(
        parsed.attachments, rules.blob_folder,
        max_bytes=rules.max_attachment_bytes, max_count=rules.max_attachments)
    message = to_message(raw, parsed, is_ours=rules.accepts,
                         keep_signature=rules.keep_signature, token_secret=rules.token_secret,
                         attachments=attachments, notes=notes)
    return MailRead(message=message, sender=sender, from_name=parsed.from_name)
