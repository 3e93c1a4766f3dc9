"""The reply token that threads a customer's reply back to its session.

A token is 32 lower-case base32 characters: the session's UUID (16 bytes) and the first 4
bytes of an HMAC-SHA256 over it. It goes into our plus-address (``support+TOKEN@...``) and
into our Message-IDs (``<cb.TOKEN.NONCE@domain>``), so a reply finds its session through
Reply-To/To or through In-Reply-To/References. Lower case because mail systems may fold the
case of local parts; reading accepts either case. Forged or damaged tokens are rejected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import uuid

TOKEN_LENGTH = 32
_MAC_BYTES = 4
_TOKEN = re.compile(r"[a-z2-7]{32}")
_MSGID = re.compile(r"cb\.([a-z2-7]{32})\.[a-z0-9]+@", re.IGNORECASE)


def make_token(session_id: str, secret: bytes) -> str:
    """The token for ``session_id`` (a UUID string). Raises ValueError for anything else."""
    if not secret:
        raise ValueError("the reply token secret is empty")
    try:
        raw = uuid.UUID(session_id).bytes
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"session id {session_id!r} is not a UUID") from None
    mac = hmac.new(secret, raw, hashlib.sha256).digest()[:_MAC_BYTES]
    return base64.b32encode(raw + mac).decode("ascii").lower()


def read_token(token: str, secret: bytes) -> str | None:
    """The session id a genuine token names, or None (malformed, damaged or forged)."""
    token = token.strip().lower()
    if not secret or not _TOKEN.fullmatch(token):
        return None
    try:
        data = base64.b32decode(token.upper())
    except (binascii.Error, ValueError):
        return None
    raw, mac = data[:16], data[16:]
    expected = hmac.new(secret, raw, hashlib.sha256).digest()[:_MAC_BYTES]
    if not hmac.compare_digest(mac, expected):
        return None
    return str(uuid.UUID(bytes=raw))


def plus_address(address: str, token: str) -> str:
    """``support@example.com`` with ``token`` as its plus tag: ``support+token@example.com``.

    An existing tag is replaced. Raises ValueError when ``address`` is not local@domain.
    """
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address.strip()):
        raise ValueError(f"{address!r} is not an e-mail address")
    if not _TOKEN.fullmatch(token):
        raise ValueError("not a reply token")
    return f"{local.split('+', 1)[0]}+{token}@{domain}"


def token_from_address(address: str) -> str | None:
    """The token in an address's plus tag (lower-cased), or None. Not verified: see
    :func:`read_token`."""
    local = address.strip().strip("<>").rpartition("@")[0]
    tag = local.partition("+")[2].lower()
    return tag if _TOKEN.fullmatch(tag) else None


def make_message_id(token: str, domain: str, nonce: str | None = None) -> str:
    """A Message-ID of ours carrying ``token``: ``<cb.TOKEN.NONCE@domain>``.

    ``nonce`` (lower-case letters and digits) makes each id unique; random when None.
    """
    if not _TOKEN.fullmatch(token):
        raise ValueError("not a reply token")
    domain = domain.strip().lower()
    if not re.fullmatch(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?", domain):
        raise ValueError(f"{domain!r} is not a domain for Message-IDs")
    nonce = secrets.token_hex(8) if nonce is None else nonce
    if not re.fullmatch(r"[a-z0-9]+", nonce):
        raise ValueError("nonce must be lower-case letters and digits")
    return f"<cb.{token}.{nonce}@{domain}>"


def token_from_message_id(msgid: str) -> str | None:
    """The token in one of our Message-IDs (with or without angle brackets), or None."""
    match = _MSGID.fullmatch(msgid.strip().strip("<>").rpartition("@")[0] + "@")
    return match.group(1).lower() if match else None
