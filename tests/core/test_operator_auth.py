"""The dashboard's cookie, form token and loopback rules, and its time formatting: pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from casebridge.dashboard import since
from casebridge.operator_auth import (
    CookieError,
    form_token,
    form_token_ok,
    is_loopback_client,
    is_loopback_host,
    operator_key,
    same_origin,
    sign_cookie,
    verify_cookie,
)
from hypothesis import given
from hypothesis import strategies as st

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
SECRET = b"s" * 32
nonces = st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=16, max_size=64
)
tokens = st.text(max_size=40)


@given(nonces, tokens, st.integers(1, 10**6))
def test_a_cookie_round_trips_until_it_expires(nonce: str, token: str, life: int) -> None:
    key = operator_key(SECRET, token)
    cookie = sign_cookie(key, nonce, expires_at=NOW + timedelta(seconds=life))
    assert verify_cookie(cookie, key, now=NOW) == nonce
    with pytest.raises(CookieError, match="expired"):
        verify_cookie(cookie, key, now=NOW + timedelta(seconds=life))


@given(nonces, tokens, tokens, st.data())
def test_a_cookie_changed_or_under_another_token_is_refused(
    nonce: str, token: str, other: str, data: st.DataObject
) -> None:
    key = operator_key(SECRET, token)
    cookie = sign_cookie(key, nonce, expires_at=NOW + timedelta(hours=1))
    if other != token:
        with pytest.raises(CookieError):
            verify_cookie(cookie, operator_key(SECRET, other), now=NOW)
    at = data.draw(st.integers(0, len(cookie) - 1))
    replacement = data.draw(st.characters(codec="ascii").filter(lambda c: c != cookie[at]))
    changed = cookie[:at] + replacement + cookie[at + 1 :]
    with pytest.raises(CookieError):
        verify_cookie(changed, key, now=NOW)


def test_the_cookie_holds_no_token_and_refuses_odd_shapes() -> None:
    key = operator_key(SECRET, "the-api-token")
    cookie = sign_cookie(key, "n" * 32, expires_at=NOW + timedelta(hours=1))
    assert "the-api-token" not in cookie
    for bad in ["", "x", "1.2.3", "1..", f"{cookie}.x", cookie.replace(".", ":")]:
        with pytest.raises(CookieError, match="malformed"):
            verify_cookie(bad, key, now=NOW)
    with pytest.raises(ValueError, match="16 bytes"):
        operator_key(b"short", "t")
    with pytest.raises(ValueError, match="nonce"):
        sign_cookie(key, "short", expires_at=NOW)


@given(nonces, nonces, tokens)
def test_a_form_token_belongs_to_its_browser_session(a: str, b: str, token: str) -> None:
    key = operator_key(SECRET, token)
    assert form_token_ok(form_token(key, a), key, a)
    assert form_token_ok(form_token(key, a), key, b) == (a == b)
    assert not form_token_ok("", key, a)
    assert not form_token_ok(form_token(key, a), operator_key(SECRET, token + "x"), a)


def test_loopback_hosts_and_clients() -> None:
    for host in [
        "127.0.0.1:8080",
        "localhost:8080",
        "LOCALHOST",
        "[::1]:8080",
        "127.9.9.9",
        "localhost.",
    ]:
        assert is_loopback_host(host), host
    for host in [
        "attacker.example",
        "attacker.example:8080",
        "localhost.attacker.example",
        "10.0.0.1:8080",
        "[::2]:80",
        "",
        "127.0.0.1.nip.io",
    ]:
        assert not is_loopback_host(host), host
    for client in ["127.0.0.1", "::1", "::ffff:127.0.0.1"]:
        assert is_loopback_client(client), client
    for client in ["203.0.113.9", "", "testclient", "::ffff:10.0.0.1"]:
        assert not is_loopback_client(client), client


def test_same_origin() -> None:
    assert same_origin("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert same_origin("https://Bridge.Example", "bridge.example")
    for origin in ["null", "http://evil.example", "http://127.0.0.1:8081", "file://x", ""]:
        assert not same_origin(origin, "127.0.0.1:8080"), origin


@given(st.integers(-(10**6), 10**8))
def test_since_is_short_and_coarse(seconds: int) -> None:
    text = since(NOW - timedelta(seconds=seconds), NOW)
    if seconds < -59:
        assert text == "in the future"
    elif seconds < 60:
        assert text == "just now"
    else:
        number, unit, ago = text.split()
        size = {"min": 60, "h": 3600, "d": 86400}[unit]
        assert ago == "ago" and int(number) == seconds // size >= 1
        # The largest unit that fits is used.
        bigger = {"min": 3600, "h": 86400, "d": None}[unit]
        assert bigger is None or seconds < bigger
    assert since(None, NOW) == ""
