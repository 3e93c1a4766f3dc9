"""loop_reason and SenderRateLimiter."""

from __future__ import annotations

import dataclasses

import pytest
from casebridge_email.guards import SenderRateLimiter, loop_reason
from casebridge_email.mime import ParsedEmail, parse_email
from hypothesis import given
from hypothesis import strategies as st

OURS = ["bridge.example.com", "example.com"]
ORDINARY = ParsedEmail(
    from_addr="ann@customer.example",
    message_id="CAF123@mail.gmail.com",
    subject="My order",
    text="Hello",
    content_type="text/plain",
)


def test_ordinary_mail_passes() -> None:
    assert loop_reason(ORDINARY, our_domains=OURS) is None
    assert loop_reason(ORDINARY, our_domains=OURS, envelope_from="ann@customer.example") is None
    human = dataclasses.replace(ORDINARY, auto_submitted="no", precedence="first-class")
    assert loop_reason(human, our_domains=OURS) is None


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"auto_submitted": "auto-replied"}, "Auto-Submitted: auto-replied"),
        ({"auto_submitted": "auto-generated; owner=x"}, "Auto-Submitted: auto-generated"),
        ({"x_autoreply": "yes"}, "X-Autoreply"),
        ({"x_autorespond": "vacation"}, "X-Autorespond"),
        ({"precedence": "bulk"}, "Precedence: bulk"),
        ({"precedence": "junk"}, "Precedence: junk"),
        ({"precedence": "list"}, "Precedence: list"),
        ({"content_type": "multipart/report"}, "multipart/report"),
        ({"x_failed_recipients": "x@y.example"}, "X-Failed-Recipients"),
        ({"return_path": "<>"}, "null sender"),
        ({"from_addr": "mailer-daemon@mx.example"}, "machine address"),
        ({"from_addr": "postmaster@mx.example"}, "machine address"),
        ({"from_addr": "no-reply@shop.example"}, "machine address"),
        ({"from_addr": "noreply+abc@shop.example"}, "machine address"),
        ({"from_addr": "do-not-reply@shop.example"}, "machine address"),
        ({"from_addr": "do_not_reply@shop.example"}, "machine address"),
        ({"message_id": "cb.abc.123@bridge.example.com"}, "our own message"),
        ({"message_id": "x@Example.COM"}, "our own message"),
        ({"list_id": "Announce <announce.lists.vendor.example>"}, "List-Id"),
    ],
)
def test_loops_and_machines_are_named(changes: dict[str, str], expected: str) -> None:
    reason = loop_reason(dataclasses.replace(ORDINARY, **changes), our_domains=OURS)
    assert reason is not None and expected in reason


def test_null_envelope_sender_is_a_bounce() -> None:
    reason = loop_reason(ORDINARY, our_domains=OURS, envelope_from="")
    assert reason is not None and "null sender" in reason


def test_our_own_google_group_is_not_a_list() -> None:
    ours = dataclasses.replace(ORDINARY, list_id="<support.example.com>")
    assert loop_reason(ours, our_domains=OURS) is None


def test_parsed_out_of_office_and_bounce() -> None:
    ooo = parse_email(
        b"From: Bob <bob@customer.example>\nAuto-Submitted: auto-replied\n"
        b"Subject: Out of office\n\nI am away.\n"
    )
    assert "auto-replied" in (loop_reason(ooo, our_domains=OURS) or "")
    bounce = parse_email(
        b"From: MAILER-DAEMON@mx.example\nContent-Type: multipart/report; "
        b"report-type=delivery-status; boundary=b\n\n--b\nContent-Type: text/plain\n\n"
        b"failed\n--b\nContent-Type: message/delivery-status\n\nStatus: 5.1.1\n--b--\n"
    )
    assert "delivery status" in (loop_reason(bounce, our_domains=OURS) or "")


def test_lookalike_domain_is_not_ours() -> None:
    other = dataclasses.replace(ORDINARY, message_id="x@notexample.com")
    assert loop_reason(other, our_domains=OURS) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_window_slides() -> None:
    clock = FakeClock()
    limiter = SenderRateLimiter(3, 60.0, clock)
    assert [limiter.allow("a@x.example") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b@x.example")
    assert not limiter.allow("A@X.example")
    clock.now += 59.9
    assert not limiter.allow("a@x.example")
    clock.now += 0.2
    assert [limiter.allow("a@x.example") for _ in range(4)] == [True, True, True, False]


def test_rate_limiter_memory_is_bounded() -> None:
    clock = FakeClock()
    limiter = SenderRateLimiter(1, 10.0, clock, max_senders=50)
    for i in range(500):
        assert limiter.allow(f"s{i}@x.example")
    assert len(limiter) == 50
    clock.now += 11
    limiter.allow("new@x.example")
    assert len(limiter) == 1


def test_rate_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        SenderRateLimiter(0, 10, FakeClock())


@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.floats(0, 30)), max_size=60),
    st.integers(1, 5),
    st.floats(1, 20),
)
def test_never_more_than_the_limit_in_any_window(
    events: list[tuple[str, float]], limit: int, window: float
) -> None:
    clock = FakeClock()
    limiter = SenderRateLimiter(limit, window, clock)
    accepted: dict[str, list[float]] = {}
    for sender, step in events:
        clock.now += step
        if limiter.allow(sender):
            accepted.setdefault(sender, []).append(clock.now)
    for times in accepted.values():
        for t in times:
            assert sum(1 for u in times if t - window < u <= t) <= limit
