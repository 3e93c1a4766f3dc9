"""How long the outbox waits before retrying a job: exponential backoff with jitter.

Pure computation, no I/O. Also how to read a ``Retry-After`` header, which every HTTP
client of the bridge honours. The envelope for attempt ``n`` (1 for the first
retry) is ``min(cap, base * factor ** (n - 1))``; the delay is drawn uniformly from
``[envelope * (1 - jitter), envelope]``. ``jitter=1`` is "full jitter" (AWS's recommended
default, which spreads a thundering herd best), ``jitter=0.5`` is "equal jitter" (never
less than half the envelope), ``jitter=0`` is no jitter at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

__all__ = ["BackoffPolicy", "RandomSource", "delay", "envelope", "retry_after_seconds"]


class RandomSource(Protocol):
    """Anything with ``random()`` in ``[0, 1)``: :class:`random.Random`, or a fake in tests."""

    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Retry timing and budget. Times in seconds.

    ``max_attempts`` is the number of runs a job gets (the first included) before it is
    dead-lettered, unless the job sets its own.
    """

    base: float = 2.0
    factor: float = 2.0
    cap: float = 600.0
    jitter: float = 1.0
    max_attempts: int = 10

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.base) and self.base > 0):
            problems.append(f"base must be a positive number of seconds, got {self.base}")
        if not (math.isfinite(self.factor) and self.factor >= 1):
            problems.append(f"factor must be >= 1, got {self.factor}")
        if not (math.isfinite(self.cap) and self.cap >= self.base):
            problems.append(f"cap must be >= base ({self.base}), got {self.cap}")
        if not 0 <= self.jitter <= 1:
            problems.append(f"jitter must be between 0 and 1, got {self.jitter}")
        if self.max_attempts < 1:
            problems.append(f"max_attempts must be >= 1, got {self.max_attempts}")
        if problems:
            raise ValueError("invalid backoff policy: " + "; ".join(problems))


def envelope(policy: BackoffPolicy, attempt: int) -> float:
    """The longest delay after failed attempt number ``attempt`` (1-based), capped."""
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    exponent = attempt - 1
    # Compare in log space so a huge attempt number cannot overflow a float.
    if policy.factor > 1 and exponent * math.log(policy.factor) >= math.log(
        policy.cap / policy.base
    ):
        return policy.cap
    return min(policy.cap, policy.base * policy.factor**exponent)


def delay(policy: BackoffPolicy, attempt: int, rng: RandomSource) -> float:
    """Seconds to wait after failed attempt ``attempt``: uniform in
    ``[envelope * (1 - jitter), envelope]``."""
    top = envelope(policy, attempt)
    return top * (1 - policy.jitter * rng.random())


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date), or
    None when absent or unreadable. Never negative; ``now`` is for tests."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN or infinite
        return None
    return max(0.0, seconds)
