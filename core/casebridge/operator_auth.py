"""Who may use the operator's dashboard, and proof that a form post came from it.

Pure: no I/O, no clock reads. The web layer (:mod:`casebridge.dashboard`) feeds it the
request's parts.

* **The key.** Every value below is an HMAC under :func:`operator_key`, derived from the
  bridge's link secret and the API token: changing either signs every browser out.
* **The cookie** is ``<expiry>.<nonce>.<signature>``: a random nonce and its expiry, signed.
  It never holds the token; it proves the browser once gave it (or, with no token set, that
  it came from loopback). The web layer sets it ``HttpOnly; SameSite=Strict``.
* **The form token** (CSRF) is an HMAC of the cookie's nonce: a page from elsewhere can make a
  browser post, but cannot read the token off the dashboard to post it along.
* **Loopback.** With no API token the dashboard answers only a loopback client that asked for
  a loopback host name, so a web page that rebinds its own name to 127.0.0.1 is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
from datetime import datetime
from urllib.parse import urlsplit

__all__ = [
    "CookieError",
    "form_token",
    "form_token_ok",
    "is_loopback_client",
    "is_loopback_host",
    "operator_key",
    "same_origin",
    "sign_cookie",
    "verify_cookie",
]

_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_EXP_RE = re.compile(r"0|[1-9][0-9]{0,11}")
_SIG_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}


class CookieError(ValueError):
    """The dashboard cookie was refused: "malformed", "bad signature" or "expired"."""


def _mac(key: bytes, *parts: str) -> str:
    # The unit separator cannot appear in any part, so part lists never collide.
    digest = hmac.new(key, "\x1f".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def operator_key(link_secret: bytes, api_token: str) -> bytes:
    """The key of cookies and form tokens; a new token or secret gives a new key."""
    if len(link_secret) < 16:
        raise ValueError("the link secret must be at least 16 bytes")
    token_digest = hashlib.sha256(api_token.encode()).hexdigest()
    return hmac.new(link_secret, f"dashboard\x1f{token_digest}".encode(), hashlib.sha256).digest()


def sign_cookie(key: bytes, nonce: str, *, expires_at: datetime) -> str:
    """The cookie value for a browser session ``nonce`` (16-64 URL-safe characters)."""
    if not _NONCE_RE.fullmatch(nonce):
        raise ValueError("the nonce must be 16 to 64 URL-safe base64 characters")
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    exp = str(max(0, int(expires_at.timestamp())))
    return f"{exp}.{nonce}.{_mac(key, 'cookie', exp, nonce)}"


def verify_cookie(value: str, key: bytes, *, now: datetime) -> str:
    """The nonce of a genuine, unexpired cookie, else :class:`CookieError`.

    The signature is compared in constant time, before the expiry is looked at.
    """
    exp, _, rest = value.partition(".")
    nonce, _, sig = rest.partition(".")
    if not (_EXP_RE.fullmatch(exp) and _NONCE_RE.fullmatch(nonce) and _SIG_RE.fullmatch(sig)):
        raise CookieError("malformed")
    if not hmac.compare_digest(_mac(key, "cookie", exp, nonce).encode(), sig.encode()):
        raise CookieError("bad signature")
    if now.timestamp() >= int(exp):
        raise CookieError("expired")
    return nonce


def form_token(key: bytes, nonce: str) -> str:
    """The token every dashboard form carries for the browser session ``nonce``."""
    return _mac(key, "form", nonce)


def form_token_ok(given: str, key: bytes, nonce: str) -> bool:
    return hmac.compare_digest(form_token(key, nonce).encode(), given.encode("utf-8", "replace"))


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8080
        return host[1 : host.find("]")] if "]" in host else ""
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host


def _is_loopback_ip(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).is_loopback
    except ValueError:
        return False


def is_loopback_host(host_header: str) -> bool:
    """True when the ``Host`` header names this machine: localhost, 127.0.0.0/8 or ::1."""
    name = _host_name(host_header)
    return name in _LOOPBACK_NAMES or _is_loopback_ip(name)


def is_loopback_client(address: str) -> bool:
    """True for a peer address on loopback (``127.0.0.1``, ``::1``, ``::ffff:127.0.0.1``)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def same_origin(origin: str, host_header: str) -> bool:
    """True when an ``Origin`` header names the host the request was sent to.

    Browsers send ``Origin`` on form posts; ``null`` (a sandboxed frame, a redirect from
    elsewhere) is not our origin.
    """
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        return False
    return parts.netloc.lower() == host_header.strip().lower()
