"""The fallbacks that let casebridge work with no AI account: a keyword and turn-count
handoff rule, an extractive summary and rule-based fields.

They are an ordinary plugin, registered through the entry point ``defaults``, and every
implementation is ``trylast`` so any other plugin's answer comes first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .config import FieldRule, FieldsSection, HandoffSection
from .hookspecs import hookimpl
from .model import Author, FieldValue, HandoffDecision, Message, Session, Summary

if TYPE_CHECKING:
    pass

SUBJECT_LIMIT = 120
REQUEST_LIMIT = 1500


def customer_words(transcript: Sequence[Message]) -> list[str]:
    return [m.text or m.original_text for m in transcript if m.author is Author.CUSTOMER]


def _phrase_pattern(phrases: Sequence[str]) -> re.Pattern[str] | None:
    if not phrases:
        return None
    # Whole words only, so "agent" does not fire on "agentic" or "reagent".
    alternatives = "|".join(re.escape(p.casefold()) for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def decide_handoff(
    transcript: Sequence[Message], phrases: re.Pattern[str] | None, max_turns: int
) -> HandoffDecision | None:
    """The default policy: the customer asked for a person, or has written ``max_turns``
    times without the conversation being resolved."""
    words = customer_words(transcript)
    if not words:
        return None
    if phrases is not None:
        found = phrases.search(words[-1].casefold())
        if found:
            return HandoffDecision(f"the customer asked for a person ({found.group(0)!r})",
                                   "defaults")
    if max_turns > 0 and len(words) >= max_turns:
        return HandoffDecision(f"{len(words)} customer messages without resolution", "defaults")
    return None


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def assistant_line(answers: int) -> list[str]:
    """What the summary says about the assistant: nothing when it never answered (there may
    be no assistant at all), else how often, in plain English."""
    if answers <= 0:
        return []
    times = "once" if answers == 1 else "twice" if answers == 2 else f"{answers} times"
    return [f"The assistant answered {times} before the handoff."]


def extractive_summary(
    session: Session, transcript: Sequence[Message], decision: HandoffDecision
) -> Summary:
    """Who wrote, on which channel, what they asked in their own words, and why it was
    handed off."""
    contact = session.contact
    who = contact.name or next(iter(contact.emails + contact.phones), "an unknown customer")
    address = ", ".join(contact.emails + contact.phones)
    words = customer_words(transcript)
    first = words[0] if words else ""
    subject_line = session.subject or next((ln for ln in first.splitlines() if ln.strip()), "")
    subject = _clip(" ".join(subject_line.split()) or f"{session.channel} conversation",
                    SUBJECT_LIMIT)
    answers = sum(1 for m in transcript if m.author is Author.ASSISTANT)
    # One sentence of who, where and why; the description template adds the structured
    # Customer / Channel lines, so they are not repeated here.
    lines = [
        f"{who}" + (f" ({address})" if address and address != who else "")
        + f" wrote by {session.channel}; handed off because {decision.reason}.",
        *assistant_line(answers),
        "",
        "Request, in the customer's words:",
        _clip(first, REQUEST_LIMIT),
    ]
    if len(words) > 1:
        lines += ["", "Latest message:", _clip(words[-1], REQUEST_LIMIT)]
    return Summary(subject=subject, description="\n".join(lines))


def apply_rules(
    rules: Sequence[FieldRule], session: Session, transcript: Sequence[Message]
) -> dict[str, FieldValue]:
    """Evaluate the ``[[fields.rules]]``: the first matching rule per column wins."""
    text = "\n".join(customer_words(transcript)).casefold()
    fields: dict[str, FieldValue] = {}
    for rule in rules:
        if rule.column in fields:
            continue
        if rule.channel and rule.channel != session.channel:
            continue
        if rule.keywords and not any(k.casefold() in text for k in rule.keywords):
            continue
        if rule.regex and not re.search(rule.regex, text, re.IGNORECASE):
            continue
        fields[rule.column] = FieldValue(rule.value, rule.kind, "defaults")
    return fields


class DefaultsPlugin:
    """Keyword/turn handoff, extractive summary, rule-based fields."""

    def __init__(self) -> None:
        self.handoff = HandoffSection()
        self.fields = FieldsSection()
        self._phrases = _phrase_pattern(self.handoff.phrases)

    def use(self, handoff: HandoffSection, fields: FieldsSection) -> None:
        """Take the TOML's ``[handoff]`` and ``[fields]`` (the runner calls this: they are
        the core's sections, not a plugin's)."""
        self.handoff = handoff
        self.fields = fields
        self._phrases = _phrase_pattern(self.handoff.phrases)

    @hookimpl(trylast=True)
    def handoff_policy(self, transcript: Sequence[Message]) -> HandoffDecision | None:
        return decide_handoff(transcript, self._phrases, self.handoff.max_customer_turns)

    @hookimpl(trylast=True)
    def summarize(
        self, session: Session, transcript: Sequence[Message], decision: HandoffDecision
    ) -> Summary:
        return extractive_summary(session, transcript, decision)

    @hookimpl(trylast=True)
    def map_fields(
        self, session: Session, transcript: Sequence[Message]
    ) -> Mapping[str, FieldValue]:
        return apply_rules(self.fields.rules, session, transcript)
