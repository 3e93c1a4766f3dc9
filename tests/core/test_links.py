from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from casebridge.errors import CasebridgeError
from casebridge.links import LinkError, sign_session_link, verify_session_link
from hypothesis import assume, given
from hypothesis import strategies as st

SECRET = b"0123456789abcdef-link-secret"
BASE = "https://bridge.example.test"

session_ids = st.text(min_size=1, max_size=60).filter(lambda s: "\x00" not in s)
times = st.datetimes(
    min_value=datetime(2001, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
lifetimes = st.integers(min_value=2, max_value=10 * 365 * 86400)


def parts(url: str) -> tuple[str, str, str]:
    split = urlsplit(url)
    assert split.path.startswith("/sessions/")
    query = parse_qs(split.query, keep_blank_values=True, strict_parsing=True)
    return unquote(split.path.removeprefix("/sessions/")), query["exp"][0], query["sig"][0]


def test_link_shape() -> None:
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    url = sign_session_link(BASE + "/", "abc-123", SECRET, expires_at=expires)
    assert url.startswith(f"{BASE}/sessions/abc-123?exp={int(expires.timestamp())}&sig=")
    sid, exp, sig = parts(url)
    assert (sid, int(exp)) == ("abc-123", int(expires.timestamp()))
    assert len(sig) == 43


@given(session_ids, times, lifetimes)
def test_round_trip_valid_before_expiry(sid: str, now: datetime, lifetime: int) -> None:
    url = sign_session_link(BASE, sid, SECRET, expires_at=now + timedelta(seconds=lifetime))
    got_sid, exp, sig = parts(url)
    assert got_sid == sid
    verify_session_link(got_sid, exp, sig, SECRET, now=now)


@given(session_ids, times, st.integers(min_value=0, max_value=10**8))
def test_expired_rejected(sid: str, expires: datetime, late: int) -> None:
    url = sign_session_link(BASE, sid, SECRET, expires_at=expires)
    got_sid, exp, sig = parts(url)
    now = datetime.fromtimestamp(int(exp), UTC) + timedelta(seconds=late)
    with pytest.raises(LinkError) as info:
        verify_session_link(got_sid, exp, sig, SECRET, now=now)
    assert info.value.reason == "expired"


@given(session_ids, session_ids, times)
def test_other_session_id_rejected(sid: str, other: str, now: datetime) -> None:
    assume(sid != other)
    url = sign_session_link(BASE, sid, SECRET, expires_at=now + timedelta(days=1))
    _, exp, sig = parts(url)
    with pytest.raises(LinkError) as info:
        verify_session_link(other, exp, sig, SECRET, now=now)
    assert info.value.reason == "bad signature"


@given(session_ids, times, st.text(alphabet="0123456789", min_size=1, max_size=12))
def test_changed_expiry_rejected(sid: str, now: datetime, new_exp: str) -> None:
    url = sign_session_link(BASE, sid, SECRET, expires_at=now + timedelta(days=1))
    got_sid, exp, sig = parts(url)
    assume(new_exp != exp)
    with pytest.raises(LinkError) as info:
        verify_session_link(got_sid, new_exp, sig, SECRET, now=now)
    assert info.value.reason in {"bad signature", "malformed"}


@given(session_ids, times, st.data())
def test_changed_signature_rejected(sid: str, now: datetime, data: st.DataObject) -> None:
    url = sign_session_link(BASE, sid, SECRET, expires_at=now + timedelta(days=1))
    got_sid, exp, sig = parts(url)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    index = data.draw(st.integers(min_value=0, max_value=len(sig) - 1))
    char = data.draw(st.sampled_from(alphabet).filter(lambda c: c != sig[index]))
    forged = sig[:index] + char + sig[index + 1 :]
    with pytest.raises(LinkError) as info:
        verify_session_link(got_sid, exp, forged, SECRET, now=now)
    assert info.value.reason == "bad signature"


@given(session_ids, times, st.text(max_size=60))
def test_arbitrary_signature_rejected(sid: str, now: datetime, sig: str) -> None:
    url = sign_session_link(BASE, sid, SECRET, expires_at=now + timedelta(days=1))
    got_sid, exp, real = parts(url)
    assume(sig != real)
    with pytest.raises(LinkError):
        verify_session_link(got_sid, exp, sig, SECRET, now=now)


def test_other_secret_rejected() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    url = sign_session_link(BASE, "s1", SECRET, expires_at=now + timedelta(hours=1))
    sid, exp, sig = parts(url)
    with pytest.raises(LinkError, match="bad signature"):
        verify_session_link(sid, exp, sig, b"another-secret-of-enough-length", now=now)


@pytest.mark.parametrize(
    ("exp", "sig"),
    [
        ("", "x" * 43),
        ("12a", "x" * 43),
        ("-5", "x" * 43),
        ("0123", "x" * 43),
        ("1", "x" * 42),
        ("1", "x" * 42 + "="),
        ("1", "x" * 44),
        ("1" * 13, "x" * 43),
    ],
)
def test_malformed_parts(exp: str, sig: str) -> None:
    with pytest.raises(LinkError) as info:
        verify_session_link("s1", exp, sig, SECRET, now=datetime(2030, 1, 1, tzinfo=UTC))
    assert info.value.reason == "malformed"
    assert isinstance(info.value, CasebridgeError)


def test_leading_zero_expiry_is_not_a_second_spelling() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    url = sign_session_link(BASE, "s1", SECRET, expires_at=now + timedelta(hours=1))
    sid, exp, sig = parts(url)
    with pytest.raises(LinkError, match="malformed"):
        verify_session_link(sid, "0" + exp, sig, SECRET, now=now)


def test_bad_arguments() -> None:
    aware = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="16 bytes"):
        sign_session_link(BASE, "s1", b"short", expires_at=aware)
    with pytest.raises(ValueError, match="timezone-aware"):
        sign_session_link(BASE, "s1", SECRET, expires_at=datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="session id"):
        sign_session_link(BASE, "", SECRET, expires_at=aware)


def test_error_never_shows_secret() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(LinkError) as info:
        verify_session_link("s1", "1", "y" * 43, SECRET, now=now)
    assert SECRET.decode() not in str(info.value)
