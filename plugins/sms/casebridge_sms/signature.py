"""Twilio's request signature (``X-Twilio-Signature``).

The signed string is the full URL the provider requested, followed by every POST parameter's
name and value with no separators, parameters sorted by name (then value; a repeated
name-value pair counts once); the signature is the base64 of its HMAC-SHA1 under the
account's auth token.

Verification accepts what Twilio's own ``twilio.request_validator.RequestValidator`` accepts:
the URL as given, without its port, or with the scheme's default port (443 / 80) added, since
Twilio signs with or without the port depending on how the webhook URL was written.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import ParseResult, urlparse

Params = Mapping[str, str] | Sequence[tuple[str, str]]

DEFAULT_PORTS = {"https": 443, "http": 80}


def _signed_bytes(url: str, params: Params) -> bytes:
    items = params.items() if isinstance(params, Mapping) else params
    # Sorted by name, then value, so the order the fields arrived in never matters; a pair
    # repeated verbatim counts once, as in Twilio's reference validator.
    return (url + "".join(name + value for name, value in sorted(set(items)))).encode("utf-8")


def compute_signature(auth_token: str, url: str, params: Params) -> str:
    """The base64 HMAC-SHA1 signature of ``url`` and ``params`` under ``auth_token``."""
    digest = hmac.new(auth_token.encode("utf-8"), _signed_bytes(url, params), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode("ascii")


def _port(parsed: ParseResult) -> int | None:
    try:
        return parsed.port
    except ValueError:  # a port that is not a number, or out of range
        return None


def without_port(url: str) -> str:
    """``url`` without the port in its authority (unchanged when it names none)."""
    parsed = urlparse(url)
    if not _port(parsed):
        return url
    return parsed._replace(netloc=parsed.netloc.rsplit(":", 1)[0]).geturl()


def with_default_port(url: str) -> str:
    """``url`` with its scheme's default port (https 443, else 80) when it names no port."""
    parsed = urlparse(url)
    if _port(parsed) or not parsed.netloc or parsed.netloc.endswith(":"):
        return url
    port = DEFAULT_PORTS.get(parsed.scheme, 80)
    return parsed._replace(netloc=f"{parsed.netloc}:{port}").geturl()


def signed_url_variants(url: str) -> list[str]:
    """The URLs a signature for ``url`` may have been computed over, ``url`` first."""
    return list(dict.fromkeys((url, without_port(url), with_default_port(url))))


def verify_signature(auth_token: str, url: str, params: Params, signature: str) -> bool:
    """True when ``signature`` is the right one for ``url`` (or its port variants, see the
    module docstring) and ``params``; each comparison in constant time."""
    given = signature.encode("utf-8")
    matches = [
        hmac.compare_digest(compute_signature(auth_token, variant, params).encode("ascii"), given)
        for variant in signed_url_variants(url)
    ]
    return any(matches)
