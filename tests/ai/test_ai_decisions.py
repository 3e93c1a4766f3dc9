"""Validating model output: every input gives an answer, a handoff, a field or a reason."""

from __future__ import annotations

import json

from casebridge_ai.decisions import Output, decide_turn, read_fields, read_output, read_summary
from casebridge_ai.settings import AiField
from casebridge_ai.usage import Usage, add_usage, parse_usage
from hypothesis import given
from hypothesis import strategies as st

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
decision_like = st.fixed_dictionaries(
    {}, optional={"action": st.sampled_from(["answer", "handoff", "refund", ""]) | json_values,
                  "answer": st.text() | json_values, "reason": st.text() | json_values})
junk = st.text() | st.binary().map(lambda b: b.decode("latin-1"))
messages = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={"content": junk | json_values,
                                        "tool_calls": json_values}),
    decision_like.map(lambda d: {"tool_calls": [{"function": {"name": "respond",
                                                              "arguments": json.dumps(d)}}]}),
    decision_like.map(lambda d: {"content": json.dumps(d)}),
)

LOOKUP = AiField("PriorityId", "urgency", "lookup", ["High", "Medium", "Low"])
TEXT = AiField("ProductName", "product", "text", max_chars=15)


@given(messages, st.integers(1, 50))
def test_any_message_gives_exactly_an_answer_or_a_handoff(message, limit) -> None:
    output = read_output(message, "respond")
    assert (output.value is None) == bool(output.problem)
    turn = decide_turn(output, limit)
    assert bool(turn.answer) != (turn.handoff is not None)
    if turn.answer:
        value = output.value
        assert value is not None and value["action"] == "answer"
        assert turn.answer == value["answer"].strip() and len(turn.answer) <= limit
    else:
        assert turn.handoff.source == "ai" and turn.handoff.reason.strip()
        assert "\n" not in turn.handoff.reason and len(turn.handoff.reason) <= 300


@given(st.text().filter(lambda t: t.strip()), st.booleans())
def test_a_valid_answer_is_taken_as_given(answer, as_tool) -> None:
    decision = json.dumps({"action": "answer", "answer": answer, "reason": ""})
    message = ({"tool_calls": [{"function": {"name": "respond", "arguments": decision}}]}
               if as_tool else {"content": decision})
    turn = decide_turn(read_output(message, "respond"), 10_000)
    assert turn.answer == answer.strip() and turn.handoff is None


@given(st.text())
def test_a_handoff_keeps_its_reason_on_one_line(reason) -> None:
    turn = decide_turn(Output({"action": "handoff", "answer": "", "reason": reason}), 100)
    assert turn.handoff is not None and turn.answer == ""
    expected = " ".join(reason.split()) or "the assistant handed off without a reason"
    if len(expected) <= 300:
        assert turn.handoff.reason == expected
    else:
        assert turn.handoff.reason.endswith("…") and len(turn.handoff.reason) <= 300
        assert expected.startswith(turn.handoff.reason[:-1])


@given(junk.filter(lambda t: not t.strip().startswith(("{", "`"))))
def test_free_text_is_never_read_as_a_decision(text) -> None:
    output = read_output({"content": text}, "respond")
    assert output.value is None
    turn = decide_turn(output, 100)
    assert turn.handoff is not None and "unusable" in turn.handoff.reason


def test_an_overlong_answer_hands_off() -> None:
    turn = decide_turn(Output({"action": "answer", "answer": "x" * 11, "reason": ""}), 10)
    assert turn.handoff is not None and "longer than 10 characters" in turn.handoff.reason


@given(json_values, st.integers(100, 400), st.sampled_from(["", "de"]))
def test_summaries_are_capped_or_refused_with_a_reason(value, cap, language) -> None:
    for output in (Output(value if isinstance(value, dict) else None, "not an object"),
                   Output({"subject": value, "description": value, "language": value})):
        result = read_summary(output, cap, language)
        if isinstance(result, str):
            assert result
            continue
        assert 0 < len(result.description) <= cap
        assert "\n" not in result.subject and len(result.subject) <= 120
        assert result.language == (language or result.language)


@given(st.text(min_size=1), st.integers(100, 400))
def test_a_long_description_is_cut_at_the_cap(text, cap) -> None:
    result = read_summary(Output({"subject": "s", "description": text * 50}), cap, "")
    if not isinstance(result, str):
        assert len(result.description) <= cap


@given(st.dictionaries(st.sampled_from(["PriorityId", "ProductName", "Other"]),
                       json_values | st.sampled_from(["high", " Low ", "Critical"])))
def test_fields_are_validated_column_by_column(value) -> None:
    outcome = read_fields(Output(value), [LOOKUP, TEXT])
    assert not set(outcome.values) & set(outcome.rejected)
    assert set(outcome.values) | set(outcome.rejected) <= {"PriorityId", "ProductName"}
    if "PriorityId" in outcome.values:
        assert outcome.values["PriorityId"].value in LOOKUP.allowed
        assert outcome.values["PriorityId"].kind == "lookup"
    if "ProductName" in outcome.values:
        assert 0 < len(outcome.values["ProductName"].value) <= 15
    given_lookup = value.get("PriorityId")
    if isinstance(given_lookup, str) and given_lookup.strip().casefold() not in (
            "", "high", "medium", "low"):
        assert "not one of the allowed values" in outcome.rejected["PriorityId"]


def test_unusable_fields_output_fills_nothing_and_says_why() -> None:
    outcome = read_fields(read_output({"content": "PriorityId: High"}, "fill"), [LOOKUP])
    assert outcome.values == {} and "not JSON" in outcome.problem


@given(st.lists(st.tuples(st.sampled_from(["assistant", "summary", "fields"]),
                          st.integers(0, 10_000), st.integers(0, 10_000)), max_size=10))
def test_session_usage_adds_up_by_kind(calls) -> None:
    record = None
    for kind, prompt, completion in calls:
        record = add_usage(record, kind, Usage(prompt, completion))
    record = record or {}
    assert record.get("calls", 0) == len(calls)
    assert record.get("prompt_tokens", 0) == sum(p for _, p, _ in calls)
    by_kind = record.get("by_kind", {})
    assert sum(k["completion_tokens"] for k in by_kind.values()) == sum(c for _, _, c in calls)
    assert json.loads(json.dumps(record)) == record


@given(json_values)
def test_usage_parsing_takes_only_counts(body) -> None:
    usage = parse_usage({"usage": body})
    assert usage.prompt_tokens >= 0 and usage.completion_tokens >= 0
    assert add_usage(body, "fields", usage)["calls"] >= 1
