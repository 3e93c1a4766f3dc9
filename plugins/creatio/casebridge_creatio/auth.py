"""Signing in to Creatio: a login session (cookies + BPMCSRF) or an OAuth 2.0 token.

An authenticator hands the client the headers every request carries, absorbs cookies Creatio
sets on the way, and signs in again when the client reports a 401. Concurrent callers share
one sign-in: a renewal only happens if no other caller renewed since the failing request
was made (``generation``). Nothing here ever puts a password, a cookie or a token into a
message or a repr.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from http.cookies import CookieError, SimpleCookie
from typing import Any

import anyio
import httpx
from casebridge.plugin import PermanentError, TransientError, read_json, retry_after_seconds

from .settings import CreatioSettings

log = logging.getLogger("casebridge.creatio")

# A token is renewed once this share of its lifetime has passed, so a short-lived token is
# still used for most of its life (a fixed margin would renew a 60 s token before every
# request) ...
_RENEW_SHARE = 0.8
# ... but never sooner than this many seconds after it was fetched, unless it expires first.
_RENEW_FLOOR = 5.0
# Past this share of its lifetime a token is no longer sent: it may expire in flight.
_USABLE_SHARE = 0.95


class CreatioAuthError(PermanentError):
    """Creatio (or its identity server) refused to sign the bridge in; says why."""


def looks_like_html(response: httpx.Response) -> bool:
    """True when an answer is a web page rather than the JSON an API returns."""
    kind = response.headers.get("content-type", "").lower()
    if "html" in kind:
        return True
    return response.content[:200].lstrip().startswith(b"<")


def retry_after(response: httpx.Response, now: float | None = None) -> float | None:
    """The answer's ``Retry-After`` in seconds (a number or an HTTP date), or None."""
    current = None if now is None else datetime.fromtimestamp(now, UTC)
    return retry_after_seconds(response.headers.get("retry-after"), current)


def transient_answer(response: httpx.Response, what: str) -> TransientError | None:
    """A TransientError for a 429 or 5xx answer, else None."""
    status = response.status_code
    if status == 429 or status >= 500:
        return TransientError(f"{what}: HTTP {status}", retry_after=retry_after(response))
    return None


class Authenticator:
    """Base of the two sign-in modes."""

    mode = ""
    # Login sessions answer 403 when the BPMCSRF went stale: sign in again once on a 403 too.
    renew_on_403 = False

    def __init__(self, settings: CreatioSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self.generation = 0
        self._lock: anyio.Lock | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings.url})"

    def _get_lock(self) -> anyio.Lock:
        if self._lock is None:
            self._lock = anyio.Lock()
        return self._lock

    def _valid(self) -> bool:
        raise NotImplementedError

    def _headers(self) -> dict[str, str]:
        raise NotImplementedError

    async def _sign_in(self, http: httpx.AsyncClient) -> None:
        raise NotImplementedError

    async def headers(self, http: httpx.AsyncClient) -> dict[str, str]:
        """The headers for the next request, signing in first when needed."""
        if not self._valid():
            async with self._get_lock():
                if not self._valid():
                    await self._sign_in(http)
                    self.generation += 1
        return self._headers()

    async def renew(self, http: httpx.AsyncClient, generation: int) -> None:
        """Sign in again after a refusal, unless someone already did since ``generation``."""
        async with self._get_lock():
            if self.generation == generation:
                self._forget()
                await self._sign_in(http)
                self.generation += 1

    def _forget(self) -> None:
        raise NotImplementedError

    def absorb(self, response: httpx.Response) -> None:
        """Keep what an answer sets (Creatio refreshes its session cookies)."""


class LoginAuth(Authenticator):
    """``POST {url}/ServiceModel/AuthService.svc/Login``, then cookies and BPMCSRF."""

    mode = "login"
    renew_on_403 = True

    def __init__(self, settings: CreatioSettings, clock: Callable[[], float]) -> None:
        super().__init__(settings, clock)
        self._cookies: dict[str, str] = {}

    def _valid(self) -> bool:
        return bool(self._cookies)

    def _forget(self) -> None:
        self._cookies.clear()

    def _headers(self) -> dict[str, str]:
        headers = {
            "ForceUseSession": "true",
            "Cookie": "; ".join(f"{k}={v}" for k, v in self._cookies.items()),
        }
        csrf = self._cookies.get("BPMCSRF")
        if csrf:
            headers["BPMCSRF"] = csrf
        return headers

    def absorb(self, response: httpx.Response) -> None:
        if self._cookies:
            self._cookies.update(_set_cookies(response))

    async def _sign_in(self, http: httpx.AsyncClient) -> None:
        url = f"{self.settings.url}/ServiceModel/AuthService.svc/Login"
        password = self.settings.password.reveal() if self.settings.password else ""
        response = await http.post(
            url,
            json={"UserName": self.settings.username, "UserPassword": password},
            headers={"ForceUseSession": "true", "Accept": "application/json"},
        )
        where = f"Creatio login at {url}"
        failure = transient_answer(response, where)
        if failure:
            raise failure
        if response.status_code == 404 or looks_like_html(response):
            raise CreatioAuthError(
                f"{where}: HTTP {response.status_code} and no Creatio AuthService answer; "
                "check url (the instance address, without /0)"
            )
        body = _json_object(response)
        if body is None:
            raise CreatioAuthError(
                f"{where}: HTTP {response.status_code} with an answer that is not Creatio's"
            )
        code = body.get("Code")
        if response.status_code >= 400 or code not in (0, "0"):
            message = _first_text(body.get("Message"), _exception_message(body.get("Exception")))
            raise CreatioAuthError(
                f"Creatio refused the login for user {self.settings.username!r}: "
                f"{message or f'code {code}, HTTP {response.status_code}'}"
            )
        cookies = _set_cookies(response)
        if not cookies:
            raise CreatioAuthError(f"{where}: the login succeeded but set no session cookie")
        self._cookies = cookies
        log.info("signed in to Creatio at %s as %s", self.settings.url, self.settings.username)


class OAuthAuth(Authenticator):
    """OAuth 2.0 client credentials at ``{identity_url}/connect/token``; bearer token."""

    mode = "oauth"

    def __init__(self, settings: CreatioSettings, clock: Callable[[], float]) -> None:
        super().__init__(settings, clock)
        self._token = ""
        self._renew_at = 0.0
        self._usable_until = 0.0

    def _valid(self) -> bool:
        return bool(self._token) and self.clock() < self._renew_at

    async def headers(self, http: httpx.AsyncClient) -> dict[str, str]:
        """The bearer header; past the renewal point one caller fetches a new token while
        the others keep sending the current one until it is about to expire."""
        if not self._valid():
            lock = self._get_lock()
            still_usable = bool(self._token) and self.clock() < self._usable_until
            if not (still_usable and lock.locked()):
                async with lock:
                    if not self._valid():
                        await self._sign_in(http)
                        self.generation += 1
        return self._headers()

    def _forget(self) -> None:
        self._token = ""

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    async def _sign_in(self, http: httpx.AsyncClient) -> None:
        url = f"{self.settings.identity_url}/connect/token"
        secret = self.settings.client_secret.reveal() if self.settings.client_secret else ""
        started = self.clock()
        response = await http.post(
            url,
            data={
                "client_id": self.settings.client_id,
                "client_secret": secret,
                "grant_type": "client_credentials",
            },
            headers={"Accept": "application/json"},
        )
        where = f"Creatio identity server at {url}"
        failure = transient_answer(response, where)
        if failure:
            raise failure
        body = _json_object(response)
        if body is None or looks_like_html(response):
            raise CreatioAuthError(
                f"{where}: HTTP {response.status_code} and no OAuth answer; check identity_url"
            )
        token = body.get("access_token")
        if response.status_code >= 400 or not isinstance(token, str) or not token:
            reason = _first_text(body.get("error_description"), body.get("error"))
            raise CreatioAuthError(
                f"Creatio's identity server refused client {self.settings.client_id!r}: "
                f"{reason or f'HTTP {response.status_code}'}"
            )
        try:
            lifetime = float(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        self._token = token
        self._renew_at = started + renew_after(lifetime)
        self._usable_until = started + max(0.0, lifetime) * _USABLE_SHARE
        log.info("got a Creatio OAuth token for client %s", self.settings.client_id)


def renew_after(lifetime: float) -> float:
    """Seconds after fetching a token of ``lifetime`` seconds at which to fetch the next:
    at 80 % of its life, but not sooner than 5 s unless it expires sooner."""
    lifetime = max(0.0, lifetime)
    return max(lifetime * _RENEW_SHARE, min(_RENEW_FLOOR, lifetime * _USABLE_SHARE))


def make_authenticator(settings: CreatioSettings, clock: Callable[[], float]) -> Authenticator:
    return OAuthAuth(settings, clock) if settings.auth == "oauth" else LoginAuth(settings, clock)


def _set_cookies(response: httpx.Response) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(header)
        except CookieError:
            continue
        for name, morsel in jar.items():
            cookies[name] = morsel.value
    return cookies


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = read_json(response.content or b"null")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _exception_message(exception: object) -> str:
    if isinstance(exception, dict):
        return _first_text(exception.get("Message"), exception.get("message"))
    return ""


def _first_text(*values: object) -> str:
    for value in values:
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""
