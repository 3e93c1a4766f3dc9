"""The data that flows between the core and its plugins.

Plain, immutable values: plugins receive them and return new ones; nothing here does I/O.
Times are timezone-aware UTC datetimes; phone numbers are E.164 strings; e-mail addresses
are lower-cased.
"""

from __future__ import annotations

import copyreg
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

# Every record the bridge derives from something else gets a UUIDv5 in this namespace, so a
# retried write carries the same id as the first attempt.
NAMESPACE = uuid.UUID("5c0a8f5e-3d7b-4c39-9f0e-7a61c2b1e0d4")


_NAMESPACE_BYTES = NAMESPACE.bytes


def derived_id(*parts: str) -> str:
    """A stable id for the record identified by ``parts`` (same parts, same id): the text of
    ``uuid.uuid5(NAMESPACE, "\x1f".join(parts))``, made without a UUID object (a handoff
    derives a dozen; the object costs more than the hash)."""
    raw = bytearray(hashlib.sha1(_NAMESPACE_BYTES + "\x1f".join(parts).encode(),
                                 usedforsecurity=False).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _frozen(mapping: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


def _pickle_frozen(mapping: MappingProxyType[str, str]) -> tuple[object, ...]:
    return _frozen, (dict(mapping),)


# The values here freeze their mappings in read-only proxies, which pickle cannot copy; a
# proxy pickles as a copy of its dict, so a message can cross to and from a worker process
# (casebridge.processes). Both ends import this module to unpickle these types.
copyreg.pickle(MappingProxyType, _pickle_frozen)  # type: ignore[arg-type]


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Author(StrEnum):
    CUSTOMER = "customer"
    ASSISTANT = "assistant"
    AGENT = "agent"
    SYSTEM = "system"


class AddressKind(StrEnum):
    """What a customer's address is, as the channel that received it says: the core files
    it among the contact's e-mail addresses or phone numbers and never looks inside it."""

    EMAIL = "email"
    PHONE = "phone"


class SessionStatus(StrEnum):
    ASSISTANT = "assistant"
    HANDED_OFF = "handed_off"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file that came with (or goes out with) a message.

    ``location`` says where the bytes are kept (a path below the attachment folder, or a URL
    for media the provider hosts); ``refused`` is set when the file was not kept and why.
    """

    name: str
    content_type: str
    size: int
    sha256: str
    location: str = ""
    content_id: str = ""
    inline: bool = False
    refused: str = ""


@dataclass(frozen=True, slots=True)
class Contact:
    """A customer, known by any of several addresses and numbers."""

    id: str
    name: str = ""
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    crm_id: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a conversation, in either direction.

    ``text`` is the new content (quoted reply text and signatures trimmed), ``original_text``
    the text as received, ``html`` sanitized HTML or empty. ``external_id`` is the channel's
    own id (Message-ID, MessageSid) and with ``channel`` identifies an inbound uniquely.
    ``thread_refs`` are the channel's threading hints (In-Reply-To and References for email).
    ``notes`` records what happened to the message on the way in (a charset fallback, a
    refused attachment) for the rep and the logs.
    """

    id: str
    channel: str
    direction: Direction
    author: Author
    external_id: str
    sender: str
    recipients: tuple[str, ...]
    text: str
    original_text: str = ""
    html: str = ""
    subject: str = ""
    sender_name: str = ""
    attachments: tuple[Attachment, ...] = ()
    thread_refs: tuple[str, ...] = ()
    sent_at: datetime = field(default_factory=utcnow)
    received_at: datetime = field(default_factory=utcnow)
    session_id: str = ""
    trace_id: str = ""
    notes: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=lambda: _frozen(None))

    def __post_init__(self) -> None:
        if not isinstance(self.meta, MappingProxyType):
            object.__setattr__(self, "meta", _frozen(self.meta))


@dataclass(frozen=True, slots=True)
class Inbound:
    """What a channel's ``ingest`` makes of one raw inbound.

    Either ``message`` is set, with ``sender_kind`` saying what its sender's address is, or
    ``dropped`` says why nothing should reach a session (an auto-reply, a bounce, an opt-out
    keyword...). ``contact_name`` is the name the channel saw (an e-mail display name), used
    when a new contact is created.
    """

    message: Message | None
    dropped: str = ""
    contact_name: str = ""
    sender_kind: AddressKind | None = None

    def __post_init__(self) -> None:
        if self.message is not None and self.sender_kind is None:
            raise ValueError("an Inbound with a message needs sender_kind (AddressKind.EMAIL "
                             "or AddressKind.PHONE): the core does not guess it")
        if self.sender_kind is not None:
            object.__setattr__(self, "sender_kind", AddressKind(self.sender_kind))


@dataclass(frozen=True, slots=True)
class CaseLink:
    """A session's link to the CRM case it was handed to."""

    crm: str
    case_id: str
    number: str = ""
    url: str = ""


@dataclass(frozen=True, slots=True)
class Session:
    """A conversation with one contact on one channel."""

    id: str
    channel: str
    contact: Contact
    status: SessionStatus
    channel_address: str = ""
    subject: str = ""
    case: CaseLink | None = None
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class CaseRef:
    """A case the CRM holds; ``is_open`` is False once its status is final."""

    crm: str
    id: str
    number: str = ""
    status: str = ""
    is_open: bool = True
    url: str = ""


@dataclass(frozen=True, slots=True)
class ActivityRef:
    crm: str
    id: str
    case_id: str


@dataclass(frozen=True, slots=True)
class FieldValue:
    """A value for one CRM column. ``kind`` "lookup" carries a display value the CRM plugin
    resolves to its record id; "text" is written as it is. An empty ``value`` with a ``note``
    says why a plugin left the column empty: nothing is written, and the note goes into the
    case description for the rep."""

    value: str
    kind: Literal["text", "lookup"] = "text"
    source: str = ""
    note: str = ""


@dataclass(frozen=True, slots=True)
class Summary:
    """The case description a rep reads first."""

    subject: str
    description: str
    language: str = ""


@dataclass(frozen=True, slots=True)
class HandoffDecision:
    """A structured decision to hand a session to a human, with the reason."""

    reason: str
    source: str = ""


@dataclass(frozen=True, slots=True)
class AssistantTurn:
    """The assistant's move: ``answer`` to send to the customer, or ``handoff``."""

    answer: str = ""
    handoff: HandoffDecision | None = None


@dataclass(frozen=True, slots=True)
class CaseRequest:
    """Everything a CRM needs to create one case.

    ``key`` is the case's stable id (derived from the session): a plugin writes it where it can
    find the case again, and when ``maybe_written`` is True (an earlier attempt may have reached
    the CRM) it looks the case up by that key before writing.
    """

    key: str
    session: Session
    contact: Contact
    summary: Summary
    fields: Mapping[str, FieldValue]
    maybe_written: bool = False


@dataclass(frozen=True, slots=True)
class ActivityRequest:
    """One message to add to a case as an activity, keyed like :class:`CaseRequest`.

    ``body_text`` and ``body_html`` are already rendered from the templates; ``first`` marks
    the activity that carries the "View session" link.
    """

    key: str
    case: CaseRef
    session: Session
    message: Message
    title: str
    body_text: str
    body_html: str
    first: bool = False
    maybe_written: bool = False


@dataclass(frozen=True, slots=True)
class AttachmentRequest:
    """One stored attachment of a message to upload to the case, keyed like
    :class:`CaseRequest`: at most once per ``key``, looked up first when ``maybe_written``."""

    key: str
    case: CaseRef
    session: Session
    message: Message
    attachment: Attachment
    data: bytes
    maybe_written: bool = False


DescribeCase = Callable[[Contact], Awaitable[CaseRequest]]
PendingActivities = Callable[[CaseRef], Awaitable[list[ActivityRequest]]]


@dataclass(frozen=True, slots=True)
class HandoffRequest:
    """One whole handoff, for a CRM that writes it in as few round trips as it can.

    ``key`` is the new case's key (as :class:`CaseRequest`); ``contact.crm_id`` may be empty
    (not synced yet). ``case_id`` is the case an earlier attempt recorded for this session,
    or "". The plugin finds the contact and its open case, then calls ``describe`` only when
    it must create a case (the summary may cost an assistant call), and ``activities`` once
    it knows the case: the messages that case lacks, their intents already recorded.
    ``maybe_written`` is True when an earlier attempt may have reached the CRM.
    """

    key: str
    session: Session
    contact: Contact
    describe: DescribeCase
    activities: PendingActivities
    case_id: str = ""
    maybe_written: bool = False


@dataclass(frozen=True, slots=True)
class HandoffResult:
    """What a ``handoff`` wrote or found: the contact with ``crm_id``, the case, whether it
    was created for this handoff, and one activity per request ``activities`` returned."""

    contact: Contact
    case: CaseRef
    created: bool
    activities: list[ActivityRef]


@dataclass(frozen=True, slots=True)
class Reply:
    """A rep's reply read from the CRM, to be delivered on the session's channel."""

    crm: str
    activity_id: str
    case_id: str
    text: str
    html: str = ""
    author_name: str = ""
    sent_at: datetime = field(default_factory=utcnow)


class DeliveryState(StrEnum):
    SENT = "sent"
    REFUSED = "refused"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one outbound message. ``REFUSED`` and ``FAILED`` are final: the core
    records them on the session and on the case, and does not retry them. A transient failure
    is raised as :class:`casebridge.errors.TransientError` instead."""

    state: DeliveryState
    external_id: str = ""
    detail: str = ""
    segments: int = 0


@dataclass(frozen=True, slots=True)
class CrmEvent:
    """Something a CRM told us through its webhook.

    ``kind`` "agent_reply" carries ``reply``; "case_closed" only ``case_id``.
    """

    kind: Literal["agent_reply", "case_closed"]
    crm: str
    case_id: str
    reply: Reply | None = None


@dataclass(frozen=True, slots=True)
class CheckResult:
    """A plugin's health: ``ok`` with "Active", or the precise reason it cannot work."""

    plugin: str
    ok: bool
    detail: str = "Active"


@dataclass(frozen=True, slots=True)
class RawInbound:
    """An inbound as a channel's transport received it, before ``ingest`` parses it.

    ``payload`` (bytes) and ``fields`` (strings) hold what the transport delivered, in the
    channel's own terms: the core never reads them. Email puts the RFC 5322 bytes in
    ``payload`` and the SMTP envelope in ``fields``; SMS puts the provider's webhook form in
    ``fields``. Two generic facts the core does use, set by the channel: ``sender``, who it
    is from as the transport says (listed with a dropped inbound), and ``transport_id``, the
    transport's own id for it (a dropped inbound is recorded once per id; without one, once
    per payload).
    """

    channel: str
    payload: bytes = b""
    fields: Mapping[str, str] = field(default_factory=lambda: _frozen(None))
    sender: str = ""
    transport_id: str = ""
    peer: str = ""
    received_at: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        if not isinstance(self.fields, MappingProxyType):
            object.__setattr__(self, "fields", _frozen(self.fields))


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """An HTTP request to a CRM's webhook route, as the CRM plugin needs to judge it."""

    path_token: str
    headers: Mapping[str, str]
    body: bytes
    remote: str = ""

    def __post_init__(self) -> None:
        lowered = {k.lower(): v for k, v in self.headers.items()}
        object.__setattr__(self, "headers", _frozen(lowered))
