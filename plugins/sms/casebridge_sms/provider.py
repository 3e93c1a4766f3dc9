"""Sending SMS through a provider: the adapter interface and a Twilio-compatible client.

:class:`TwilioProvider` speaks Twilio's Messages API (and so the sandbox's). Failures come
out as casebridge's error types, so the outbox knows what to do with them:

Each call makes one attempt; the outbox owns retries and their backoff, so no call sleeps
while a job holds its lease.

* 429, 5xx and connection failures are :class:`TransientError`, with ``retry_after`` when
  the provider sent ``Retry-After`` (the outbox waits at least that long).
* Any other 4xx is :class:`ProviderRefusal` (a :class:`PermanentError`) carrying the
  provider's error code (21610: the recipient opted out) and message.
* A send that timed out or lost its connection after the request went out is
  :class:`AmbiguousWriteError`: the message may exist. Before sending again, look for it
  with :meth:`SmsProvider.recent_messages`.

The auth token never appears in an error message, a log line or a repr.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, Self

import httpx
from casebridge.plugin import (
    AmbiguousWriteError,
    PermanentError,
    Secret,
    TransientError,
    retry_after_seconds,
)
from casebridge.plugin import read_json as loads

API_VERSION = "2010-04-01"
# Twilio's "Attempt to send to unsubscribed recipient": the number opted out (STOP) with the
# provider or its carrier.
OPTED_OUT_CODE = 21610


class ProviderRefusal(PermanentError):
    """The provider refused the request (a 4xx other than 429): ``status`` is the HTTP
    status, ``code`` the provider's error code when it sent one."""

    def __init__(self, message: str, *, status: int, code: int | None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class SentMessage:
    """An outbound message as the provider knows it."""

    sid: str
    to: str
    from_: str
    body: str
    status: str
    date_created: datetime | None = None
    date_sent: datetime | None = None
    num_segments: int | None = None
    messaging_service_sid: str | None = None
    error_code: int | None = None
    error_message: str | None = None

    @classmethod
    def from_twilio(cls, data: Mapping[str, Any]) -> SentMessage:
        """Build one from a Twilio Message resource (JSON). Raises ValueError if it has no
        ``sid``."""
        sid = data.get("sid")
        if not isinstance(sid, str) or not sid:
            raise ValueError("the provider's message resource has no sid")
        return cls(
            sid=sid,
            to=str(data.get("to") or ""),
            from_=str(data.get("from") or ""),
            body=str(data.get("body") or ""),
            status=str(data.get("status") or ""),
            date_created=_parse_date(data.get("date_created")),
            date_sent=_parse_date(data.get("date_sent")),
            num_segments=_parse_int(data.get("num_segments")),
            messaging_service_sid=data.get("messaging_service_sid") or None,
            error_code=_parse_int(data.get("error_code")),
            error_message=data.get("error_message") or None,
        )


class SmsProvider(Protocol):
    """What the SMS plugin needs from a provider. Implementations raise casebridge's
    TransientError / AmbiguousWriteError / PermanentError (see the module docstring)."""

    async def send(
        self,
        to: str,
        body: str,
        *,
        from_: str | None = None,
        messaging_service_sid: str | None = None,
        status_callback: str | None = None,
    ) -> SentMessage:
        """Send ``body`` to ``to`` (E.164) from a number or a messaging service."""
        ...

    async def recent_messages(
        self, to: str, since: datetime, *, from_: str | None = None
    ) -> list[SentMessage]:
        """Messages to ``to`` (and from ``from_`` when given) created at or after ``since``
        (aware datetime), sent or still queued, to find out whether a send that ended
        ambiguously went out."""
        ...


class TwilioProvider:
    """A client for Twilio's Messages API at ``base_url`` (``https://api.twilio.com`` or
    the sandbox's address).

    ``client`` is used as given and left open; without one the provider makes its own and
    :meth:`aclose` closes it. Every call is one request (see the module docstring).
    """

    def __init__(
        self,
        base_url: str,
        account_sid: str,
        auth_token: Secret,
        client: httpx.AsyncClient | None = None,
        *,
        timeout: float = 15.0,
        page_size: int = 100,
        max_pages: int = 20,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if not account_sid:
            raise ValueError("account_sid is empty")
        if not isinstance(auth_token, Secret) or not auth_token:
            raise ValueError("auth_token must be a non-empty Secret")
        self.base_url = base_url.rstrip("/")
        self.account_sid = account_sid
        self._token = auth_token
        self._own_client = client is None
        self._client = client or httpx.AsyncClient()
        self._timeout = timeout
        self._page_size = page_size
        self._max_pages = max_pages

    def __repr__(self) -> str:
        return f"TwilioProvider({self.base_url!r}, account_sid={self.account_sid!r})"

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def _messages_url(self) -> str:
        return f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    async def send(
        self,
        to: str,
        body: str,
        *,
        from_: str | None = None,
        messaging_service_sid: str | None = None,
        status_callback: str | None = None,
    ) -> SentMessage:
        """POST a message. Exactly one of ``from_`` and ``messaging_service_sid`` is needed."""
        if (from_ is None) == (messaging_service_sid is None):
            raise ValueError("give exactly one of from_ and messaging_service_sid")
        form = {"To": to, "Body": body}
        if from_ is not None:
            form["From"] = from_
        if messaging_service_sid is not None:
            form["MessagingServiceSid"] = messaging_service_sid
        if status_callback is not None:
            form["StatusCallback"] = status_callback
        response = await self._call("POST", self._messages_url, f"send to {to}", data=form)
        return SentMessage.from_twilio(self._json(response, f"send to {to}"))

    async def get_message(self, sid: str) -> SentMessage:
        """One message by its sid (PermanentError if the provider does not know it)."""
        url = f"{self.base_url}/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json"
        response = await self._call("GET", url, f"fetch message {sid}")
        return SentMessage.from_twilio(self._json(response, f"fetch message {sid}"))

    async def recent_messages(
        self, to: str, since: datetime, *, from_: str | None = None
    ) -> list[SentMessage]:
        """Messages to ``to`` (and from ``from_``) created at or after ``since``, queued ones
        included, following the provider's pages (at most ``max_pages``).

        No ``DateSent`` filter: Twilio fills ``date_sent`` only once a message is sent, so
        such a filter misses a message still queued, which a retry would then send twice.
        The list is bounded by the numbers (one customer's messages), ``PageSize`` and
        ``max_pages`` instead. Every page is read: where Twilio sorts messages not sent yet
        is not documented, so reaching older messages proves nothing."""
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        what = f"list messages to {to}"
        params: dict[str, str] | None = {"To": to, "PageSize": str(self._page_size)}
        if from_ is not None:
            params["From"] = from_
        url = self._messages_url
        found: list[SentMessage] = []
        for _ in range(self._max_pages):
            data = self._json(await self._call("GET", url, what, params=params), what)
            for item in data.get("messages") or []:
                message = SentMessage.from_twilio(item)
                stamp = message.date_created or message.date_sent
                if stamp is None or stamp >= since:
                    found.append(message)
            next_uri = data.get("next_page_uri")
            if not next_uri:
                break
            # next_page_uri carries the query (filters, page token) itself.
            url, params = httpx.URL(self.base_url).join(next_uri), None
        return found

    async def _call(
        self,
        method: str,
        url: str | httpx.URL,
        what: str,
        *,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One request, one attempt: a failure is raised as the error type that tells the
        outbox what to do (see the module docstring); the outbox owns the retries."""
        try:
            response = await self._client.request(
                method,
                url,
                data=data,
                params=params,
                auth=(self.account_sid, self._token.reveal()),
                timeout=self._timeout,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached the provider: always safe to try again.
            raise TransientError(self._scrub(
                f"{what}: cannot connect to {self.base_url}: {type(exc).__name__} {exc}"
            )) from None
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
            reason = f"no answer from {self.base_url}: {type(exc).__name__} {exc}"
            if method == "POST":
                raise AmbiguousWriteError(self._scrub(
                    f"{what}: {reason} after the request was sent; the message may have "
                    "been sent, look it up before sending again"
                )) from None
            raise TransientError(self._scrub(f"{what}: {reason}")) from None
        status = response.status_code
        if status < 400:
            return response
        if status != 429 and status < 500:
            raise ProviderRefusal(
                self._scrub(f"{what}: {_describe(response)}"),
                status=status,
                code=_error_code(response),
            )
        # The outbox waits at least this long before the next attempt.
        raise TransientError(
            self._scrub(f"{what}: {_describe(response)}"),
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )

    def _json(self, response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            data = loads(response.content)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise PermanentError(
                self._scrub(f"{what}: HTTP {response.status_code} answer is not a JSON object")
            )
        return data

    def _scrub(self, text: str) -> str:
        # Belt and braces: a provider or proxy could echo credentials back in an error body.
        token = self._token.reveal()
        return text.replace(token, "***") if token else text


def _describe(response: httpx.Response) -> str:
    """One line for an error answer: Twilio's code, message and link when it sent them."""
    try:
        data = loads(response.content)
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("message"):
        parts = [f"HTTP {response.status_code}"]
        if data.get("code") is not None:
            parts.append(f"error {data['code']}")
        text = " ".join(parts) + f": {data['message']}"
        if data.get("more_info"):
            text += f" ({data['more_info']})"
        return text
    snippet = " ".join(response.text.split())[:200]
    return f"HTTP {response.status_code} {response.reason_phrase}" + (
        f": {snippet}" if snippet else ""
    )


def _error_code(response: httpx.Response) -> int | None:
    """Twilio's ``code`` from an error answer, when it sent one."""
    try:
        data = response.json()
    except ValueError:
        return None
    return _parse_int(data.get("code")) if isinstance(data, dict) else None


def _parse_date(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse_int(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None
