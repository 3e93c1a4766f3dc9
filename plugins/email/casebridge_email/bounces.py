"""Reading a bounce: which of our replies it returns, and why (pure, no I/O).

A bounce is a delivery status notification (RFC 3464: ``multipart/report`` with a
``message/delivery-status`` part whose ``Action`` is ``failed``) or a message with an
``X-Failed-Recipients`` header. It names the returned message by quoting its headers, so our
Message-IDs (``<...@our domain>``) in a quoted Message-ID, In-Reply-To or References header
are the replies it returns. A delay
warning (``Action: delayed``) and an auto-reply are not bounces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ACTION = re.compile(rb"^Action:[ \t]*([A-Za-z]+)", re.IGNORECASE | re.MULTILINE)
_STATUS = re.compile(rb"^Status:[ \t]*([245]\.\d{1,3}\.\d{1,3})", re.IGNORECASE | re.MULTILINE)
_DIAGNOSTIC = re.compile(
    rb"^Diagnostic-Code:[ \t]*(?:[A-Za-z-]+;)?[ \t]*(.*(?:\r?\n[ \t].*)*)",
    re.IGNORECASE | re.MULTILINE,
)
_FAILED_HEADER = re.compile(rb"^X-Failed-Recipients:", re.IGNORECASE | re.MULTILINE)
_REPORT = re.compile(rb"multipart/report", re.IGNORECASE)
# Where a returned message's id is quoted (its headers, possibly indented in a text bounce).
_ID_HEADERS = re.compile(
    rb"^[ \t]*(?:Message-ID|In-Reply-To|References):(.*(?:\r?\n[ \t].*)*)",
    re.IGNORECASE | re.MULTILINE,
)
MAX_REASON = 300


@dataclass(frozen=True, slots=True)
class Bounce:
    """The Message-IDs of ours a bounce returns (no angle brackets), and its reason."""

    message_ids: tuple[str, ...]
    reason: str


def read_bounce(raw: bytes, our_domain: str) -> Bounce | None:
    """The bounce in ``raw`` naming at least one Message-ID at ``our_domain``, or None (not a
    failure report, or not about our mail). Never raises."""
    domain = our_domain.strip().lower()
    if not domain:
        return None
    actions = {a.lower() for a in _ACTION.findall(raw)}
    is_report = bool(_REPORT.search(raw)) and b"failed" in actions
    if not is_report and not _FAILED_HEADER.search(raw):
        return None
    ours = re.compile(rb"<([^<>\s@]{1,200}@" + re.escape(domain.encode()) + rb")>", re.IGNORECASE)
    found = (m for value in _ID_HEADERS.findall(raw) for m in ours.findall(value))
    ids = tuple(dict.fromkeys(m.decode("ascii", "replace") for m in found))
    if not ids:
        return None
    return Bounce(ids, _reason(raw))


def _reason(raw: bytes) -> str:
    parts = []
    if status := _STATUS.search(raw):
        parts.append(f"status {status.group(1).decode('ascii')}")
    if diagnostic := _DIAGNOSTIC.search(raw):
        text = " ".join(diagnostic.group(1).decode("utf-8", "replace").split())
        if text:
            parts.append(text)
    reason = "; ".join(parts) or "no reason given"
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"
