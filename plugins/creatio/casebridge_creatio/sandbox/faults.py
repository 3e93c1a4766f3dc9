"""Deciding which API requests fail, and how: pure logic over a seeded random generator."""

from __future__ import annotations

import random
from collections import deque
from dataclasses import asdict, dataclass, replace
from typing import Any

from .settings import FaultSettings

OK = "ok"
ERROR = "5xx"
THROTTLE = "429"
EXPIRE = "expire"
DROP = "drop"
FAIL_AFTER_WRITE = "fail_after_write"


@dataclass(frozen=True, slots=True)
class Fate:
    """What happens to one request: ``before`` is decided up front (ok, 5xx, 429, expire,
    drop); ``after_write`` is ``"500"``, ``"drop"`` or None for what follows a committed
    write."""

    before: str = OK
    after_write: str | None = None


class FaultPlan:
    """Draws each request's :class:`Fate` from :class:`FaultSettings`; replaceable at run time
    through the admin endpoint."""

    def __init__(self, settings: FaultSettings) -> None:
        self.configure(settings)

    def configure(self, settings: FaultSettings) -> None:
        self.settings = settings
        self.random = random.Random(settings.seed)
        self.script: deque[str] = deque(settings.script)

    def draw(self, *, is_write: bool, authenticated: bool) -> Fate:
        s = self.settings
        if self.script:
            step = self.script.popleft()
            if step == FAIL_AFTER_WRITE:
                return Fate(OK, s.fail_after_write_mode)
            return Fate(step)
        # Draw every share on every request so one setting does not shift another's sequence.
        rolls = [self.random.random() for _ in range(5)]
        if rolls[0] < s.drop_rate:
            return Fate(DROP)
        if authenticated and rolls[1] < s.expire_rate:
            return Fate(EXPIRE)
        if rolls[2] < s.throttle_rate:
            return Fate(THROTTLE)
        if rolls[3] < s.error_rate:
            return Fate(ERROR)
        if is_write and rolls[4] < s.fail_after_write_rate:
            return Fate(OK, s.fail_after_write_mode)
        return Fate()

    def as_json(self) -> dict[str, Any]:
        data = asdict(self.settings)
        data["script"] = list(self.script)
        return data


def faults_from_json(current: FaultSettings, data: Any) -> FaultSettings:
    """New settings from an admin request: the given keys replace the current ones.
    Raises ValueError naming a bad key or value."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object of fault settings")
    known = set(asdict(current))
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown fault setting(s) {unknown}; known: {sorted(known)}")
    values: dict[str, Any] = {}
    for key, value in data.items():
        expected = type(getattr(current, key))
        if key == "script":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError("script must be a list of step names")
            value = tuple(value)
        elif expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
            raise ValueError(f"{key} must be a {expected.__name__}, got {value!r}")
        values[key] = value
    return replace(current, **values)
