"""Backoff delays: bounds, the monotonic envelope, jitter modes and policy validation."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from casebridge.backoff import BackoffPolicy, delay, envelope, retry_after_seconds
from hypothesis import given
from hypothesis import strategies as st


class FixedRandom:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


@st.composite
def policies(draw: st.DrawFn) -> BackoffPolicy:
    base = draw(st.floats(min_value=0.001, max_value=100, allow_nan=False))
    factor = draw(st.floats(min_value=1, max_value=10, allow_nan=False))
    cap = draw(st.floats(min_value=base, max_value=1e6, allow_nan=False))
    jitter = draw(st.floats(min_value=0, max_value=1, allow_nan=False))
    max_attempts = draw(st.integers(min_value=1, max_value=100))
    return BackoffPolicy(base, factor, cap, jitter, max_attempts)


attempts = st.integers(min_value=1, max_value=10_000)


@given(policies(), attempts, st.floats(min_value=0, max_value=1, exclude_max=True))
def test_delay_lies_within_the_jittered_envelope(
    policy: BackoffPolicy, attempt: int, draw: float
) -> None:
    top = envelope(policy, attempt)
    got = delay(policy, attempt, FixedRandom(draw))
    assert top * (1 - policy.jitter) - 1e-9 <= got <= top
    assert 0 < got <= policy.cap


@given(policies(), attempts)
def test_envelope_never_shrinks_and_never_passes_the_cap(
    policy: BackoffPolicy, attempt: int
) -> None:
    here, after = envelope(policy, attempt), envelope(policy, attempt + 1)
    assert policy.base <= here <= after <= policy.cap


@given(policies(), st.integers(min_value=1, max_value=30))
def test_envelope_is_exponential_until_the_cap(policy: BackoffPolicy, attempt: int) -> None:
    expected = min(policy.cap, policy.base * policy.factor ** (attempt - 1))
    assert envelope(policy, attempt) == pytest.approx(expected)


@given(policies(), attempts, st.integers(min_value=0, max_value=2**32))
def test_no_jitter_is_deterministic(policy: BackoffPolicy, attempt: int, seed: int) -> None:
    exact = BackoffPolicy(policy.base, policy.factor, policy.cap, 0.0, policy.max_attempts)
    assert delay(exact, attempt, random.Random(seed)) == envelope(exact, attempt)


def test_full_jitter_spans_zero_to_the_envelope() -> None:
    policy = BackoffPolicy(base=1, factor=2, cap=100, jitter=1, max_attempts=5)
    assert delay(policy, 3, FixedRandom(0.0)) == 4.0
    assert delay(policy, 3, FixedRandom(0.75)) == 1.0


def test_equal_jitter_keeps_half_the_envelope() -> None:
    policy = BackoffPolicy(base=1, factor=2, cap=100, jitter=0.5, max_attempts=5)
    assert delay(policy, 3, FixedRandom(0.999999)) == pytest.approx(2.0, abs=1e-5)
    assert delay(policy, 20, FixedRandom(0.0)) == 100


def test_huge_attempt_numbers_hit_the_cap_without_overflow() -> None:
    policy = BackoffPolicy(base=1, factor=10, cap=30, jitter=0, max_attempts=5)
    assert envelope(policy, 10**9) == 30


def test_attempts_start_at_one() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        envelope(BackoffPolicy(), 0)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"base": 0}, "base"),
        ({"factor": 0.5}, "factor"),
        ({"base": 10, "cap": 5}, "cap"),
        ({"jitter": 1.5}, "jitter"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"base": float("nan")}, "base"),
    ],
)
def test_bad_policies_are_refused_by_name(kwargs: dict[str, float], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        BackoffPolicy(**kwargs)  # type: ignore[arg-type]


@given(st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_retry_after_reads_seconds(seconds) -> None:
    assert retry_after_seconds(repr(seconds)) == seconds


@given(st.integers(-3600, 3600))
def test_retry_after_reads_an_http_date(offset) -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=offset), usegmt=True)
    assert retry_after_seconds(header, now) == max(0, offset)


@given(st.text() | st.none())
def test_retry_after_never_raises_nor_goes_negative(value) -> None:
    result = retry_after_seconds(value)
    assert result is None or result >= 0
