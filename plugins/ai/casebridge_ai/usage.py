"""Token usage: what one completion reports, and the running totals kept per session. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Usage", "add_usage", "parse_usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts a server reported for one call (0 when it reported none)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def parse_usage(body: object) -> Usage:
    """The ``usage`` of a chat-completions answer; missing or malformed counts are 0."""
    usage = body.get("usage") if isinstance(body, Mapping) else None
    if not isinstance(usage, Mapping):
        return Usage()
    return Usage(_count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))


def add_usage(record: object, kind: str, usage: Usage) -> dict[str, Any]:
    """A session's usage record (as kept in the plugin state) with one more call of ``kind``
    ("assistant", "summary", "fields") added: ``{"calls", "prompt_tokens",
    "completion_tokens", "by_kind": {kind: {same keys}}}``. A malformed record starts over."""

    def totals(value: object) -> dict[str, int]:
        value = value if isinstance(value, Mapping) else {}
        return {key: _count(value.get(key))
                for key in ("calls", "prompt_tokens", "completion_tokens")}

    def plus(value: object) -> dict[str, int]:
        out = totals(value)
        out["calls"] += 1
        out["prompt_tokens"] += usage.prompt_tokens
        out["completion_tokens"] += usage.completion_tokens
        return out

    record = record if isinstance(record, Mapping) else {}
    by_kind = record.get("by_kind")
    by_kind = dict(by_kind) if isinstance(by_kind, Mapping) else {}
    by_kind = {str(k): totals(v) for k, v in by_kind.items()}
    by_kind[kind] = plus(by_kind.get(kind))
    return {**plus(record), "by_kind": by_kind}
