"""Reading the model's structured output and validating it. Pure, and total: every function
here returns a value for any input (an unusable answer becomes a handoff, an empty field or
a reason), it never raises.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from casebridge.plugin import (
    AssistantTurn,
    FieldValue,
    HandoffDecision,
    JsonInputError,
    Summary,
    read_json,
)

from .settings import AiField

__all__ = [
    "FieldsOutcome",
    "Output",
    "decide_turn",
    "read_fields",
    "read_output",
    "read_summary",
]

SOURCE = "ai"
REASON_MAX = 300
SUBJECT_MAX = 120
_FENCE = re.compile(r"\A```(?:json)?\s*\n(.*)\n```\Z", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Output:
    """The structured part of a completion: ``value`` (a JSON object), or ``problem`` saying
    why there is none."""

    value: Mapping[str, Any] | None
    problem: str = ""


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    # Prefer to end at a word boundary when one is reasonably close.
    space = cut.rfind(" ")
    if space > limit * 0.8:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _one_line(text: str, limit: int) -> str:
    return _clip(" ".join(text.split()), limit)


def _object(text: str, where: str) -> Output:
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1).strip()
    try:
        value = read_json(stripped, what=f"the {where}")
    except JsonInputError as exc:
        return Output(None, str(exc))
    if not isinstance(value, dict):
        return Output(None, f"the {where} is JSON but not an object")
    return Output(value)


def read_output(message: object, tool: str) -> Output:
    """The JSON object a chat-completions ``message`` carries: the arguments of its call to
    ``tool``, else its content when the whole content is one JSON object (a code fence
    around it is tolerated). Prose is never read as an answer."""
    if not isinstance(message, Mapping):
        return Output(None, "the answer has no message")
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls:
        for call in calls:
            function = call.get("function") if isinstance(call, Mapping) else None
            if not isinstance(function, Mapping) or function.get("name") != tool:
                continue
            arguments = function.get("arguments")
            if isinstance(arguments, Mapping):
                return Output(arguments)
            if isinstance(arguments, str):
                return _object(arguments, "tool call's arguments")
            return Output(None, "the tool call has no arguments")
        return Output(None, f"the model called a tool other than {tool}")
    content = message.get("content")
    if isinstance(content, str) and content.strip():
        found = _object(content, "answer")
        if found.value is None:
            return Output(None, found.problem + ": free text is not accepted as a decision")
        return found
    return Output(None, "the answer is empty")


def decide_turn(output: Output, answer_max_chars: int) -> AssistantTurn:
    """The assistant's move from its structured output: an answer, or a handoff. Anything
    invalid is a handoff whose reason says what was wrong."""

    def invalid(problem: str) -> AssistantTurn:
        return AssistantTurn(handoff=HandoffDecision(
            _one_line(f"the assistant's output was unusable: {problem}", REASON_MAX), SOURCE))

    if output.value is None:
        return invalid(output.problem)
    value = output.value
    action, answer, reason = value.get("action"), value.get("answer", ""), value.get("reason", "")
    if not isinstance(answer, str) or not isinstance(reason, str):
        return invalid("answer and reason must be strings")
    if action == "handoff":
        why = _one_line(reason, REASON_MAX) or "the assistant handed off without a reason"
        return AssistantTurn(handoff=HandoffDecision(why, SOURCE))
    if action != "answer":
        shown = repr(action[:40]) if isinstance(action, str) else f"of type {type(action).__name__}"
        return invalid(f"unknown action {shown} (expected answer or handoff)")
    if not answer.strip():
        return invalid("the answer is empty")
    if len(answer.strip()) > answer_max_chars:
        return invalid(f"the answer is longer than {answer_max_chars} characters")
    return AssistantTurn(answer=answer.strip())


def read_summary(output: Output, max_chars: int, language: str) -> Summary | str:
    """The case summary from the structured output, the description cut at ``max_chars``;
    or the reason it is unusable. ``language`` (configured) wins over the model's claim."""
    if output.value is None:
        return output.problem
    value = output.value
    subject, description = value.get("subject", ""), value.get("description")
    claimed = value.get("language", "")
    if not isinstance(description, str) or not description.strip():
        return "the summary has no description"
    if not isinstance(subject, str) or not isinstance(claimed, str):
        return "the summary's subject and language must be strings"
    return Summary(
        subject=_one_line(subject, SUBJECT_MAX),
        description=_clip(description, max_chars),
        language=language or _one_line(claimed, 16),
    )


@dataclass(frozen=True, slots=True)
class FieldsOutcome:
    """Validated fields: ``values`` to write, and for each column left empty against the
    model's answer, ``rejected`` says why."""

    values: dict[str, FieldValue] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    problem: str = ""


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


def read_fields(output: Output, specs: Sequence[AiField]) -> FieldsOutcome:
    """Check each configured column's value: a lookup must be one of its allowed values
    (matched without regard to case and blanks, written in the configured spelling), a text
    is cut at its ``max_chars``. null, a missing key or a blank leaves the column empty;
    columns that are not configured are ignored."""
    if output.value is None:
        return FieldsOutcome(problem=output.problem)
    values: dict[str, FieldValue] = {}
    rejected: dict[str, str] = {}
    for spec in specs:
        raw = output.value.get(spec.column)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        if not isinstance(raw, str):
            rejected[spec.column] = f"the model gave a {type(raw).__name__}, not a string"
            continue
        if spec.kind == "lookup":
            match = next((a for a in spec.allowed if _normal(a) == _normal(raw)), None)
            if match is None:
                rejected[spec.column] = (
                    f"the model's choice is not one of the allowed values "
                    f"({', '.join(spec.allowed)})"
                )
                continue
            values[spec.column] = FieldValue(match, "lookup", SOURCE)
        else:
            values[spec.column] = FieldValue(_clip(raw, spec.max_chars), "text", SOURCE)
    return FieldsOutcome(values, rejected)
