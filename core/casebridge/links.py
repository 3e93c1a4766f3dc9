"""Signed, expiring links to the session view.

A link is ``{base_url}/sessions/{session_id}?exp=<epoch seconds>&sig=<signature>`` where the
signature is an HMAC-SHA256 over the session id and the expiry, URL-safe base64 without
padding. Anyone holding the link can read the session until it expires; nobody can forge one
for another session or stretch its life without the secret. Pure: no I/O, no clock reads.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime
from urllib.parse import quote, urlencode

from .errors import CasebridgeError

__all__ = ["LinkError", "sign_session_link", "verify_session_link"]

# Canonical decimal epoch seconds (no leading zeros, so one expiry has one spelling); the bound
# keeps int() cheap and rejects absurd values.
_EXP_RE = re.compile(r"0|[1-9][0-9]{0,11}")
# 32 bytes of HMAC-SHA256 is 43 characters of unpadded URL-safe base64.
_SIG_RE = re.compile(r"[A-Za-z0-9_-]{43}")


class LinkError(CasebridgeError):
    """A session link was refused. ``reason`` is "expired", "bad signature" or "malformed"."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"session link refused: {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason


def _signature(session_id: str, exp: int, secret: bytes) -> str:
    # The unit separator cannot appear in an epoch, so (id, exp) pairs never collide.
    payload = f"{session_id}\x1f{exp}".encode()
    digest = hmac.new(secret, payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes | bytearray) or len(secret) < 16:
        raise ValueError("session link secret must be at least 16 bytes")


def _epoch(when: datetime, name: str) -> int:
    if when.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return int(when.timestamp())


def sign_session_link(
    base_url: str, session_id: str, secret: bytes, *, expires_at: datetime
) -> str:
    """Return the signed URL of the session view, valid until ``expires_at`` (aware datetime).

    ``base_url`` is the public root of the web app (a trailing slash is ignored). Raises
    ``ValueError`` for an empty session id, a naive datetime or a secret shorter than 16 bytes.
    """
    _check_secret(secret)
    if not session_id:
        raise ValueError("session id must not be empty")
    exp = _epoch(expires_at, "expires_at")
    if exp < 0:
        raise ValueError("expires_at must be after 1970")
    query = urlencode({"exp": str(exp), "sig": _signature(session_id, exp, bytes(secret))})
    return f"{base_url.rstrip('/')}/sessions/{quote(session_id, safe='')}?{query}"


def verify_session_link(
    session_id: str, exp: str, sig: str, secret: bytes, *, now: datetime
) -> None:
    """Accept a link's parts (as taken from the URL) or raise :class:`LinkError`.

    The signature is checked before the expiry, so an expired link is reported as "expired"
    only when it was genuine. The comparison is constant-time.
    """
    _check_secret(secret)
    if not session_id or not _EXP_RE.fullmatch(exp) or not _SIG_RE.fullmatch(sig):
        raise LinkError("malformed")
    expected = _signature(session_id, int(exp), bytes(secret))
    if not hmac.compare_digest(expected.encode("ascii"), sig.encode("ascii")):
        raise LinkError("bad signature")
    if _epoch(now, "now") >= int(exp):
        raise LinkError("expired")
