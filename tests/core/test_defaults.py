"""The no-account defaults: keyword/turn handoff, extractive summary, rule-based fields."""

from __future__ import annotations

import re

from casebridge.config import DEFAULT_PHRASES, FieldRule
from casebridge.defaults import (
    SUBJECT_LIMIT,
    _phrase_pattern,
    apply_rules,
    decide_handoff,
    extractive_summary,
)
from casebridge.model import (
    Author,
    Contact,
    Direction,
    HandoffDecision,
    Message,
    Session,
    SessionStatus,
)
from casebridge.plugins import Hooks, new_manager
from hypothesis import given
from hypothesis import strategies as st

PHRASES = _phrase_pattern(DEFAULT_PHRASES)


def msg(text: str, author: Author = Author.CUSTOMER, n: int = 0) -> Message:
    return Message(f"m{n}", "email", Direction.INBOUND, author, f"x{n}", "ann@example.com",
                   ("support@example.com",), text)


def session(subject: str = "") -> Session:
    return Session("s1", "email", Contact("c1", "Ann Example", ("ann@example.com",)),
                   SessionStatus.ASSISTANT, subject=subject)


def test_hook_handoff_policy_default_phrases_in_several_languages() -> None:
    for text in ["Can I speak to a person?", "I want a HUMAN now", "Bitte mit einem Menschen",
                 "Je veux parler à un humain", "Quiero hablar con una persona",
                 "posso parlare con una persona?"]:
        decision = decide_handoff([msg(text)], PHRASES, 0)
        assert decision is not None and "asked for a person" in decision.reason, text
    for text in ["The agentic workflow failed", "my reagent order", "hello"]:
        assert decide_handoff([msg(text)], PHRASES, 0) is None, text


def test_hook_handoff_policy_turn_limit_counts_customer_messages_only() -> None:
    transcript = [msg("a", n=1), msg("ok", Author.ASSISTANT, 2), msg("b", n=3)]
    assert decide_handoff(transcript, None, 3) is None
    decision = decide_handoff([*transcript, msg("c", n=4)], None, 3)
    assert decision is not None and decision.reason.startswith("3 customer messages")
    assert decide_handoff(transcript * 5, None, 0) is None


async def test_hook_assistant_turn_none_without_an_assistant_plugin() -> None:
    pm = new_manager()
    from casebridge.defaults import DefaultsPlugin

    pm.register(DefaultsPlugin(), name="defaults")
    assert await Hooks(pm).assistant_turn(session(), [msg("hi")]) is None


@given(st.text(max_size=400), st.text(max_size=200))
def test_hook_summarize_extractive_summary_names_who_what_and_why(first: str, subject: str):
    decision = HandoffDecision("the customer asked for a person")
    summary = extractive_summary(session(subject), [msg(first)], decision)
    assert "Ann Example" in summary.description
    assert "email" in summary.description
    assert "the customer asked for a person" in summary.description
    assert first.strip()[:100] in summary.description
    assert 0 < len(summary.subject) <= SUBJECT_LIMIT and "\n" not in summary.subject


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_hook_map_fields_rules_match_keywords_regex_and_channel(text: str) -> None:
    rules = [
        FieldRule("PriorityId", "High", "lookup", keywords=["urgent"]),
        FieldRule("PriorityId", "Medium", "lookup"),
        FieldRule("CategoryId", "Billing", "lookup", regex=r"\binvoice\b"),
        FieldRule("OriginNote", "by sms", channel="sms"),
    ]
    fields = apply_rules(rules, session(), [msg(text)])
    lowered = text.casefold()
    assert fields["PriorityId"].value == ("High" if "urgent" in lowered else "Medium")
    assert fields["PriorityId"].kind == "lookup"
    assert ("CategoryId" in fields) == bool(re.search(r"\binvoice\b", lowered, re.I))
    assert "OriginNote" not in fields


@given(st.integers(0, 50))
def test_summary_names_the_assistant_only_when_it_answered(answers: int) -> None:
    transcript = [msg("my printer jams", n=0)]
    transcript += [msg(f"answer {n}", Author.ASSISTANT, n + 1) for n in range(answers)]
    summary = extractive_summary(session(), transcript, HandoffDecision("asked for a person"))
    text = summary.description
    assert "time(s)" not in text
    if answers == 0:
        # No assistant configured (or it never spoke): the summary says nothing about one.
        assert "assistant" not in text.lower()
    else:
        expected = {1: "once", 2: "twice"}.get(answers, f"{answers} times")
        assert f"The assistant answered {expected} before the handoff." in text
