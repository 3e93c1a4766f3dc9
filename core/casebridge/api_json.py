"""The JSON documents the HTTP API returns (``GET /api/sessions/{id}``). Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .deliveries import DeliveryRecord
from .model import Message, Session


def session_document(
    session: Session,
    transcript: Sequence[Message],
    states: Mapping[str, DeliveryRecord],
) -> dict[str, Any]:
    """A session as the JSON API returns it: its case, and every message with the delivery
    state of each reply (null for messages that are not replies to the customer)."""
    case = session.case
    return {
        "id": session.id,
        "channel": session.channel,
        "status": session.status.value,
        "subject": session.subject,
        "contact": {
            "name": session.contact.name,
            "emails": list(session.contact.emails),
            "phones": list(session.contact.phones),
        },
        "case": {"crm": case.crm, "id": case.case_id, "number": case.number, "url": case.url}
        if case
        else None,
        "created_at": session.created_at.isoformat(),
        "updated_at": session.updated_at.isoformat(),
        "messages": [
            {
                "id": m.id,
                "direction": m.direction.value,
                "author": m.author.value,
                "sender": m.sender,
                "recipients": list(m.recipients),
                "text": m.text,
                "sent_at": m.sent_at.isoformat(),
                "delivery": states[m.id].as_json() if m.id in states else None,
            }
            for m in transcript
        ],
    }
