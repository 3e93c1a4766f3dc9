"""Outbound replies: a threaded, well-formed message no field can inject a header into.

Every free-text header value (subject, display name, message ids) has its line breaks and
control characters turned into spaces; addresses must be a single plain address or
:func:`compose_reply` raises ValueError naming the field. Pure: nothing is sent here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime

# RFC 5322 3.6.4: a long References may drop ids from the middle, keeping the first (the
# thread's root) and the most recent ones.
MAX_REFERENCES = 20
# Display names and subjects are cut to these lengths so their encoded forms fit one line.
MAX_NAME = 100
MAX_SUBJECT = 250
_REPLY_PREFIX = re.compile(
    r"^(?:\s*(?:re|aw|sv|antw|antwort|réf|ref|rif|odp)\s*(?:\[\d+\]|\(\d+\))?\s*[:：])+\s*",
    re.IGNORECASE,
)
# Characters that end a line somewhere (str.splitlines) and other controls; tab stays.
_BREAKS = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_ID_CHARS = re.compile(r"[^\x21-\x3b\x3d\x3f-\x7e]")  # printable ASCII except "<" and ">"


class _MessageIdList(UnstructuredHeader):
    """References / In-Reply-To: folded only between ids and never RFC 2047-encoded (the
    default policy encodes a long unstructured header, which breaks the ids)."""

    def fold(self, *, policy: Policy) -> str:
        limit = policy.max_line_length or 998
        lines = [f"{self.name}:"]
        for word in str(self).split():
            if len(lines[-1]) + 1 + len(word) > limit and lines[-1] != f"{self.name}:":
                lines.append("")
            lines[-1] += " " + word
        return policy.linesep.join(lines) + policy.linesep


def _policy() -> Policy:
    registry = HeaderRegistry()
    registry.map_to_type("references", _MessageIdList)
    registry.map_to_type("in-reply-to", _MessageIdList)
    # Lines up to RFC 5322's hard limit: the stdlib's folding of encoded display names at 78
    # columns can split a word (a stray space in the name), and few headers need folding.
    return policy.default.clone(header_factory=registry, max_line_length=998)


POLICY = _policy()


def header_text(value: str, limit: int | None = None) -> str:
    """``value`` as one safe header line: line breaks and controls become spaces, runs of
    whitespace collapse, lone surrogates become "?"; cut to ``limit`` characters."""
    value = value.encode("utf-8", "replace").decode("utf-8")
    value = " ".join(_BREAKS.sub(" ", value).split())
    return value[:limit].strip() if limit is not None else value


def reply_subject(subject: str) -> str:
    """ "Re: " and the subject without its reply prefixes (Re:, RE:, Aw:, Sv:, Antw:, Réf: ...,
    also "Re[2]:"), so a thread never grows "Re: Re:". Idempotent."""
    core = header_text(subject, MAX_SUBJECT)
    while True:
        stripped = _REPLY_PREFIX.sub("", core, count=1).strip()
        if stripped == core:
            break
        core = stripped
    return f"Re: {core}" if core else "Re:"


def normalize_message_id(value: str) -> str:
    """``value`` as ``<id>``: brackets and characters a msg-id cannot hold removed; "" if
    nothing is left."""
    core = _ID_CHARS.sub("", value)
    return f"<{core}>" if core else ""


def reference_chain(references: Sequence[str], in_reply_to: str | None) -> list[str]:
    """The References of a reply: the original's References then the id replied to, each
    once, capped at :data:`MAX_REFERENCES` keeping the first and the most recent."""
    chain = [normalize_message_id(r) for r in references]
    if in_reply_to:
        chain.append(normalize_message_id(in_reply_to))
    chain = list(dict.fromkeys(i for i in chain if i))
    if len(chain) > MAX_REFERENCES:
        chain = [chain[0], *chain[-(MAX_REFERENCES - 1) :]]
    return chain


def compose_reply(
    *,
    from_addr: str,
    from_name: str,
    to_addr: str,
    subject: str,
    text: str,
    html: str | None,
    in_reply_to: str | None,
    references: Sequence[str],
    message_id: str,
    auto_submitted: bool,
    reply_to: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """A reply ready to send: text (and HTML alternative), threaded, ours by its Message-ID.

    ``subject`` is the original's (it gets one "Re: "); ``references`` are the original's
    References and ``in_reply_to`` its Message-ID (appended to References). ``message_id`` is
    ours (see :func:`casebridge_email.tokens.make_message_id`). ``auto_submitted`` marks an
    assistant's answer (RFC 3834 ``Auto-Submitted: auto-replied``) so that auto-responders do
    not answer it. Raises ValueError naming a field that is not a single address or id.
    """
    own_id = normalize_message_id(message_id)
    if not own_id or "@" not in own_id or own_id[1:-1] != message_id.strip().strip("<>"):
        raise ValueError(f"message_id {header_text(message_id)!r} is not a Message-ID")
    msg = EmailMessage(policy=POLICY)
    msg["From"] = Address(
        display_name=header_text(from_name, MAX_NAME), addr_spec=_address("from_addr", from_addr)
    )
    msg["To"] = Address(addr_spec=_address("to_addr", to_addr))
    if reply_to:
        msg["Reply-To"] = Address(addr_spec=_address("reply_to", reply_to))
    msg["Subject"] = reply_subject(subject)
    msg["Date"] = format_datetime((date or datetime.now(UTC)).astimezone(UTC))
    msg["Message-ID"] = own_id
    parent = normalize_message_id(in_reply_to or "")
    if parent:
        msg["In-Reply-To"] = parent
    chain = reference_chain(references, in_reply_to)
    if chain:
        msg["References"] = " ".join(chain)
    if auto_submitted:
        msg["Auto-Submitted"] = "auto-replied"
        # Exchange honours this instead of RFC 3834: no out-of-office answer to our answer.
        msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(_body(text))
    if html:
        msg.add_alternative(_body(html), subtype="html")
    return msg


def _body(value: str) -> str:
    value = value.encode("utf-8", "replace").decode("utf-8")
    return value if value.endswith("\n") else value + "\n"


def _address(field: str, value: str) -> str:
    candidate = value.strip()
    problem = (
        not candidate
        or candidate.count("@") != 1
        or any(c.isspace() or c in '<>,;:"()[]\\' or ord(c) < 0x20 for c in candidate)
    )
    if not problem:
        try:
            parsed = Address(addr_spec=candidate)
        except (ValueError, IndexError, TypeError):
            problem = True
        else:
            problem = parsed.addr_spec != candidate
    if problem:
        raise ValueError(f"{field} {header_text(value)!r} is not a single e-mail address")
    return candidate
