"""Reply tokens, plus-addresses and Message-IDs: round trips and forgeries."""

from __future__ import annotations

import uuid

import pytest
from casebridge_email.tokens import (
    TOKEN_LENGTH,
    make_message_id,
    make_token,
    plus_address,
    read_token,
    token_from_address,
    token_from_message_id,
)
from hypothesis import given
from hypothesis import strategies as st

SECRET = b"correct horse battery staple"
uuids = st.uuids().map(str)
secrets_ = st.binary(min_size=1, max_size=64)


@given(uuids, secrets_)
def test_token_round_trip_in_any_case(session_id: str, secret: bytes) -> None:
    token = make_token(session_id, secret)
    assert len(token) == TOKEN_LENGTH and token == token.lower()
    assert read_token(token, secret) == session_id
    assert read_token(token.upper(), secret) == session_id


@given(uuids, secrets_, secrets_)
def test_other_secret_rejects(session_id: str, secret: bytes, other: bytes) -> None:
    token = make_token(session_id, secret)
    if other != secret:
        assert read_token(token, other) is None


@given(uuids, st.integers(0, TOKEN_LENGTH - 1), st.sampled_from("abcdefghijklmnopqrstuvwxyz234567"))
def test_tampered_token_rejected(session_id: str, at: int, char: str) -> None:
    token = make_token(session_id, SECRET)
    tampered = token[:at] + char + token[at + 1 :]
    if tampered != token:
        assert read_token(tampered, SECRET) is None


@given(st.text(max_size=40))
def test_garbage_never_reads(text: str) -> None:
    assert read_token(text, SECRET) is None


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="not a UUID"):
        make_token("session-1", SECRET)
    with pytest.raises(ValueError, match="secret is empty"):
        make_token(str(uuid.uuid4()), b"")
    assert read_token(make_token(str(uuid.uuid4()), SECRET), b"") is None


@given(
    uuids, st.from_regex(r"[a-z0-9._-]{1,20}(\+[a-z0-9]{1,8})?@[a-z0-9.-]{1,30}", fullmatch=True)
)
def test_plus_address_round_trip(session_id: str, address: str) -> None:
    token = make_token(session_id, SECRET)
    tagged = plus_address(address, token)
    assert tagged.split("@")[0].count("+") == 1
    assert tagged.endswith("@" + address.rpartition("@")[2])
    assert token_from_address(tagged) == token
    assert token_from_address(tagged.upper()) == token
    assert token_from_address(f"<{tagged}>") == token


def test_plus_address_shapes() -> None:
    token = make_token(str(uuid.uuid4()), SECRET)
    assert plus_address("support@example.com", token) == f"support+{token}@example.com"
    assert plus_address("support+old@example.com", token) == f"support+{token}@example.com"
    assert token_from_address("support@example.com") is None
    assert token_from_address("support+short@example.com") is None
    with pytest.raises(ValueError, match="not an e-mail address"):
        plus_address("nobody", token)
    with pytest.raises(ValueError, match="not a reply token"):
        plus_address("a@b.example", "x\r\nBcc: evil")


@given(uuids, st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,30}[a-z0-9])?", fullmatch=True))
def test_message_id_round_trip(session_id: str, domain: str) -> None:
    token = make_token(session_id, SECRET)
    msgid = make_message_id(token, domain)
    assert msgid.startswith(f"<cb.{token}.") and msgid.endswith(f"@{domain}>")
    assert token_from_message_id(msgid) == token
    assert token_from_message_id(msgid.strip("<>")) == token
    assert token_from_message_id(msgid.upper()) == token
    assert make_message_id(token, domain) != msgid


def test_message_id_rejects_bad_parts_and_foreign_ids() -> None:
    token = make_token(str(uuid.uuid4()), SECRET)
    assert make_message_id(token, "Bridge.Example.com", nonce="n1") == (
        f"<cb.{token}.n1@bridge.example.com>"
    )
    with pytest.raises(ValueError, match="not a domain"):
        make_message_id(token, "evil>\r\nBcc: x")
    with pytest.raises(ValueError, match="nonce"):
        make_message_id(token, "example.com", nonce="A B")
    assert token_from_message_id("<CAF123@mail.gmail.com>") is None
    assert token_from_message_id(f"<xx.{token}.1@example.com>") is None
    assert token_from_message_id("") is None
