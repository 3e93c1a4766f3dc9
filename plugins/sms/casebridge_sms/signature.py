"""Twilio's request signature (``X-Twilio-Signature``).

The signed string is the full URL the provider requested, followed by every POST parameter's
name and value with no separators, parameters sorted by name; the signature is the base64 of
its HMAC-SHA1 under the account's auth token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence

Params = Mapping[str, str] | Sequence[tuple[str, str]]


def _signed_bytes(url: str, params: Params) -> bytes:
    items = list(params.items()) if isinstance(params, Mapping) else list(params)
    # Repeated names (a form may repeat a field) are ordered by value too, so the order the
    # fields arrived in never matters.
    items.sort()
    return (url + "".join(name + value for name, value in items)).encode("utf-8")


def compute_signature(auth_token: str, url: str, params: Params) -> str:
    """The base64 HMAC-SHA1 signature of ``url`` and ``params`` under ``auth_token``."""
    digest = hmac.new(auth_token.encode("utf-8"), _signed_bytes(url, params), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode("ascii")


def verify_signature(auth_token: str, url: str, params: Params, signature: str) -> bool:
    """True when ``signature`` is the right one for ``url`` and ``params``; constant time."""
    expected = compute_signature(auth_token, url, params)
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8"))
