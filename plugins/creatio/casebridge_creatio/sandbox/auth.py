"""Who is calling: AuthService sessions (cookies plus BPMCSRF) and OAuth bearer tokens."""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .settings import SandboxSettings, SandboxUser

SESSION_COOKIE = ".ASPXAUTH"
CSRF_COOKIE = "BPMCSRF"
CSRF_HEADER = "BPMCSRF"


@dataclass(slots=True)
class Session:
    user: SandboxUser
    csrf: str
    loader: str
    session_id: str


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller. ``session_key`` (the .ASPXAUTH value) is set for cookie
    sessions, ``token`` for bearer tokens; :meth:`Authenticator.expire` forgets either."""

    user: SandboxUser
    session_key: str | None = None
    token: str | None = None


class AuthError(Exception):
    """401: the message says why (no credentials, expired, bad BPMCSRF)."""


class Authenticator:
    def __init__(self, settings: SandboxSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.sessions: dict[str, Session] = {}
        self.tokens: dict[str, tuple[SandboxUser, float]] = {}

    def login(self, name: str, password: str) -> tuple[str, Session] | None:
        """A new session for valid credentials (user names compare case-insensitively, as
        Creatio's do), or None."""
        for user in self.settings.users:
            if user.name.casefold() == name.casefold() and hmac.compare_digest(
                user.password.reveal().encode(), password.encode()
            ):
                key = secrets.token_hex(32).upper()
                session = Session(user, secrets.token_urlsafe(16), secrets.token_hex(16),
                                  secrets.token_hex(12))
                self.sessions[key] = session
                return key, session
        return None

    def logout(self, key: str) -> None:
        self.sessions.pop(key, None)

    def issue_token(self, client_id: str, client_secret: str) -> tuple[str, int] | None:
        expected_secret = self.settings.oauth_client_secret.reveal().encode()
        if not (hmac.compare_digest(client_id.encode(), self.settings.oauth_client_id.encode())
                and hmac.compare_digest(client_secret.encode(), expected_secret)):
            return None
        user = next(u for u in self.settings.users if u.name == self.settings.oauth_user)
        token = secrets.token_urlsafe(32)
        lifetime = self.settings.token_lifetime_s
        self.tokens[token] = (user, self.clock() + lifetime)
        return token, lifetime

    def authenticate(self, headers: Mapping[str, str], cookies: Mapping[str, str], *,
                     write: bool) -> Caller:
        """The caller behind a request, or :class:`AuthError`. Cookie sessions must send the
        BPMCSRF header equal to their session's token on writes; bearer tokens need none."""
        authorization = headers.get("authorization", "")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise AuthError("Unsupported Authorization scheme: use Bearer.")
            entry = self.tokens.get(token.strip())
            if entry is None:
                raise AuthError("The access token is invalid or has expired.")
            user, expires = entry
            if self.clock() >= expires:
                del self.tokens[token.strip()]
                raise AuthError("The access token has expired.")
            return Caller(user, token=token.strip())
        key = cookies.get(SESSION_COOKIE)
        if not key:
            raise AuthError("Authentication required: log in with AuthService.svc/Login or "
                            "send a Bearer token.")
        session = self.sessions.get(key)
        if session is None:
            raise AuthError("The session has expired: log in again.")
        if write:
            sent = headers.get(CSRF_HEADER.lower(), "")
            if not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
                raise AuthError("The BPMCSRF header is missing or does not match the session.")
        return Caller(session.user, session_key=key)

    def expire(self, caller: Caller) -> None:
        """Forget the caller's session or token, as if it had timed out."""
        if caller.session_key is not None:
            self.sessions.pop(caller.session_key, None)
        if caller.token is not None:
            self.tokens.pop(caller.token, None)

    def clear(self) -> None:
        self.sessions.clear()
        self.tokens.clear()
