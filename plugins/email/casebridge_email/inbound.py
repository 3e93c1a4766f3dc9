"""A parsed inbound e-mail as the core's :class:`~casebridge.model.Message`. Pure: the caller
parses, stores attachments and checks the guards; nothing here does I/O.

The first recipient is the support address the mail came in on (plus tag removed), because
the core takes ``recipients[0]`` as the session's channel address: a customer writing to
``support@`` and replying to ``support+TOKEN@`` stays on one address.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from casebridge.plugin import (
    Attachment,
    Author,
    Direction,
    Message,
    RawInbound,
    derived_id,
    sanitize_html,
)
from casebridge.plugin import html_too_deep as too_deep

from .envelope import envelope_recipients, envelope_sender
from .mime import ParsedEmail
from .tokens import read_token, token_from_address, token_from_message_id
from .trim import html_to_text, visible_html, visible_text
from .trim_large import visible_large

CHANNEL = "email"
# A text this long (characters) is trimmed without a str per line (visible_large), and
# when trimming would only tidy it (whitespace at line ends, blank lines around it) it is
# kept as sent: its text is the original itself, not a second copy of a body that may be
# tens of MiB.
LARGE_TEXT = 1 << 20


def external_id(parsed: ParsedEmail, payload: bytes) -> str:
    """The inbound's id on the channel: its Message-ID (no brackets), else the bytes' hash."""
    if parsed.message_id:
        return parsed.message_id
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def message_id_for(parsed: ParsedEmail, payload: bytes) -> str:
    """The stable :class:`Message` id of an inbound: the same mail always gets the same id."""
    return derived_id(CHANNEL, external_id(parsed, payload))


def base_address(address: str) -> str:
    """``address`` lower-cased, without angle brackets and without its plus tag."""
    local, at, domain = address.strip().strip("<>").lower().rpartition("@")
    if not at:
        return address.strip().lower()
    return f"{local.split('+', 1)[0]}@{domain}"


def session_hint(
    envelope_to: Iterable[str], parsed: ParsedEmail, secret: bytes
) -> str:
    """The session id named by a genuine reply token: in a recipient's plus tag (envelope,
    then To and Cc), else in one of our Message-IDs the mail answers (In-Reply-To first, then
    References, newest first). "" when there is none; forged tokens never count."""
    candidates: list[str | None] = [
        token_from_address(a) for a in (*envelope_to, *parsed.to, *parsed.cc)
    ]
    ids = [parsed.in_reply_to, *reversed(parsed.references)]
    candidates += [token_from_message_id(i) for i in ids if i]
    for token in candidates:
        if token:
            session_id = read_token(token, secret)
            if session_id:
                return session_id
    return ""


def trimmed(original: str, *, keep_signature: bool) -> str:
    """``visible_text(original)``, or ``original`` itself (the same object) when that is
    what it equals, or when ``original`` is large (:data:`LARGE_TEXT`) and trimming would
    only tidy its whitespace."""
    if len(original) >= LARGE_TEXT:
        return visible_large(original, keep_signature=keep_signature)
    text = visible_text(original, keep_signature=keep_signature)
    return original if text == original else text


def bodies(parsed: ParsedEmail, *, keep_signature: bool) -> tuple[str, str, str]:
    """``(text, original_text, html)`` of a message.

    ``original_text`` is the text part (or the HTML rendered as text), ``text`` its new content
    with quotes (and signatures unless ``keep_signature``) trimmed (see :func:`trimmed`),
    ``html`` the HTML part trimmed the same way and sanitized: never raw customer HTML. An HTML
    part too deeply nested to render (:func:`html_note` says so) gives no ``html``: the text
    is shown.
    """
    html = ""
    if parsed.html and too_deep(parsed.html):
        original = parsed.text or html_to_text(parsed.html)  # read flat, not parsed
        return trimmed(original, keep_signature=keep_signature), original, ""
    if parsed.html:
        trimmed_html = visible_html(parsed.html)
        html = sanitize_html(trimmed_html)
    if parsed.text:
        original = parsed.text
        text = trimmed(original, keep_signature=keep_signature)
    elif parsed.html:
        original = html_to_text(parsed.html)
        text = visible_text(html_to_text(trimmed_html), keep_signature=keep_signature)
        text = original if text == original else text
    else:
        original, text = "", ""
    return text, original, html


def html_note(parsed: ParsedEmail) -> str | None:
    """The note for an activity whose HTML part could not be rendered, else None."""
    if not parsed.html or not too_deep(parsed.html):
        return None
    shown = "the text part is shown" if parsed.text else "its text is shown without formatting"
    return f"the HTML part was too deeply nested to render; {shown}"


def to_message(
    raw: RawInbound,
    parsed: ParsedEmail,
    *,
    is_ours: Callable[[str], bool],
    keep_signature: bool,
    token_secret: bytes,
    attachments: Sequence[Attachment] = (),
    notes: Sequence[str] = (),
) -> Message:
    """The customer's message. ``is_ours`` tells a support address (it becomes the first
    recipient); ``token_secret`` verifies reply tokens; ``attachments`` and ``notes`` come from
    storing the parts. The sender is the From address (else the envelope sender)."""
    text, original, html = bodies(parsed, keep_signature=keep_signature)
    envelope_to = envelope_recipients(raw)
    ours = [base_address(a) for a in envelope_to if is_ours(a)]
    header_recipients = [a.lower() for a in (*parsed.to, *parsed.cc)]
    recipients = list(dict.fromkeys([*ours, *(base_address(a) if is_ours(a) else a
                                              for a in header_recipients)]))
    meta = {}
    hint = session_hint(envelope_to, parsed, token_secret)
    if hint:
        meta["session_hint"] = hint
    sent_at: datetime = parsed.date or raw.received_at
    return Message(
        id=message_id_for(parsed, raw.payload),
        channel=CHANNEL,
        direction=Direction.INBOUND,
        author=Author.CUSTOMER,
        external_id=external_id(parsed, raw.payload),
        sender=(parsed.from_addr or envelope_sender(raw)).strip().lower(),
        sender_name=parsed.from_name,
        recipients=tuple(recipients),
        subject=parsed.subject,
        text=text,
        original_text=original,
        html=html,
        attachments=tuple(attachments),
        thread_refs=tuple(dict.fromkeys(i for i in (parsed.in_reply_to, *parsed.references)
                                        if i)),
        sent_at=sent_at,
        received_at=raw.received_at,
        notes=tuple(dict.fromkeys([*parsed.notes, *notes, *filter(None, [html_note(parsed)])])),
        meta=meta,
    )
