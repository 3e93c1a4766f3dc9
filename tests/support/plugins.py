"""Small in-process plugins: a loopback channel and a scripted assistant."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from casebridge import hookimpl
from casebridge.context import PluginContext
from casebridge.model import (
    AddressKind,
    AssistantTurn,
    Attachment,
    Author,
    Delivery,
    DeliveryState,
    Direction,
    Inbound,
    Message,
    RawInbound,
    Session,
    derived_id,
)


class LoopChannel:
    """A channel whose transport is a Python list: ``fields`` in, ``sent`` out."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.refused: set[str] = set()
        self.calls: list[str] = []

    @hookimpl
    def configure(self, context: PluginContext) -> None:
        self.context = context

    @hookimpl
    async def ingest(self, raw: RawInbound) -> Inbound:
        self.calls.append("ingest")
        fields = raw.fields
        attachments: tuple[Attachment, ...] = ()
        if "attachment" in fields:
            data = fields["attachment"].encode()
            digest = hashlib.sha256(data).hexdigest()
            location = self.context.blobs.write_sync(data, digest)
            attachments = (Attachment(fields.get("attachment_name", "file.txt"), "text/plain",
                                      len(data), digest, location),)
        if fields.get("body", "").strip().upper() == "STOP":
            return Inbound(None, dropped="opt-out keyword")
        message = Message(
            id=derived_id("loop", fields["id"]),
            channel=raw.channel,
            direction=Direction.INBOUND,
            author=Author.CUSTOMER,
            external_id=fields["id"],
            sender=fields["from"],
            recipients=(fields.get("to", "desk"),),
            text=fields["body"],
            original_text=fields["body"],
            subject=fields.get("subject", ""),
            attachments=attachments,
        )
        # The test says what the sender's address is, as a real channel knows it.
        kind = AddressKind(fields.get("kind", "email"))
        return Inbound(message, contact_name=fields.get("name", ""), sender_kind=kind)

    @hookimpl
    async def deliver_reply(self, message: Message) -> Delivery:
        self.calls.append("deliver_reply")
        if message.recipients[0] in self.refused:
            return Delivery(DeliveryState.REFUSED, detail="the customer opted out")
        if all(m.id != message.id for m in self.sent):
            self.sent.append(message)
        return Delivery(DeliveryState.SENT, external_id=f"loop-{message.id}")


class ScriptedAssistant:
    """Answers every customer message until the script says hand off."""

    def __init__(self, handoff_on: str = "refund") -> None:
        self.handoff_on = handoff_on
        self.turns = 0

    @hookimpl
    async def assistant_turn(self, transcript: Sequence[Message], session: Session):
        from casebridge.model import HandoffDecision

        self.turns += 1
        last = [m for m in transcript if m.author is Author.CUSTOMER][-1]
        if self.handoff_on in last.text.lower():
            return AssistantTurn(handoff=HandoffDecision("refunds need a person", "assistant"))
        return AssistantTurn(answer=f"Answer {self.turns} for {session.channel}")
