"""Where a :class:`~casebridge.plugin.RawInbound` keeps the SMTP envelope.

The core knows no transport, so the envelope lives in the channel's own ``fields``: the
sender under ``mail_from`` ("" for the null sender of a bounce) and the recipients under
``rcpt_to``, one a line (no address holds a line break). Pure.
"""

from __future__ import annotations

from collections.abc import Iterable

from casebridge.plugin import RawInbound

MAIL_FROM, RCPT_TO = "mail_from", "rcpt_to"


def envelope_fields(mail_from: str, rcpt_tos: Iterable[str]) -> dict[str, str]:
    """The fields of a RawInbound that carry this envelope."""
    return {MAIL_FROM: mail_from, RCPT_TO: "\n".join(rcpt_tos)}


def envelope_sender(raw: RawInbound) -> str:
    """The SMTP envelope sender of ``raw`` ("" for the null sender, or none)."""
    return raw.fields.get(MAIL_FROM, "")


def envelope_recipients(raw: RawInbound) -> tuple[str, ...]:
    """The SMTP envelope recipients of ``raw``."""
    return tuple(a for a in raw.fields.get(RCPT_TO, "").split("\n") if a)
