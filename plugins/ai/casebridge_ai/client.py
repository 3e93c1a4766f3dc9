"""An async client for OpenAI-compatible ``/chat/completions`` and ``/models`` endpoints.

What a caller can expect from :meth:`ChatClient.complete`:

* one attempt: a failure is raised at once as :class:`AiUnavailable`, whose message names
  what went wrong and never contains the API key or any conversation text; ``retryable``
  says whether trying again may help (429, 5xx, timeouts, connection failures);
* except where a customer waits for the answer live: ``retries`` (at most
  :data:`MAX_LIVE_RETRIES`) more attempts after a retryable failure, each after a short
  backoff capped at ``backoff.cap``; a ``Retry-After`` is honoured as a minimum wait, and one
  longer than the cap ends the retries at once. Everything else is the outbox's to retry;
* at most ``max_concurrency`` requests are in flight per client; waiting between attempts
  does not hold a slot.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from casebridge.plugin import (
    BackoffPolicy,
    JsonInputError,
    Secret,
    backoff_delay,
    read_json,
    retry_after_seconds,
)

from .usage import Usage, parse_usage

__all__ = ["AiUnavailable", "ChatClient", "Completion"]

log = logging.getLogger("casebridge.ai")

_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
# A customer waits for the assistant's answer: two more tries at most, then a human.
MAX_LIVE_RETRIES = 2


class AiUnavailable(Exception):
    """The endpoint gave no usable answer; ``str()`` says why (safe to log and show).
    ``status`` is the HTTP status when the server answered; ``retryable`` whether another
    attempt may succeed, ``retry_after`` the server's own wait hint in seconds."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Completion:
    """The first choice's ``message`` as the server sent it, and the usage."""

    message: Mapping[str, Any]
    usage: Usage
    finish_reason: str = ""


def _error_detail(response: httpx.Response) -> str:
    # OpenAI-style {"error": {"message": ...}}; anything else is not shown (it may be HTML).
    try:
        body = read_json(response.content)
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return f": {' '.join(message.split())[:200]}" if isinstance(message, str) else ""


def _final(failure: AiUnavailable, attempt: int, cap: float) -> AiUnavailable:
    """The error that ends the attempts, saying how many there were or why not more."""
    hint = failure.retry_after
    if failure.retryable and hint is not None and hint > cap:
        note = f"; the server asks to wait {hint:g}s"
    elif attempt > 1:
        note = f" after {attempt} attempts"
    else:
        return failure
    return AiUnavailable(f"{failure}{note}", status=failure.status,
                         retryable=failure.retryable, retry_after=hint)


class ChatClient:
    """Calls one OpenAI-compatible API root (``base_url``, e.g. ``http://127.0.0.1:8000/v1``).

    Opens a connection pool per call (a completion takes seconds, a handshake milliseconds),
    so there is nothing to close. ``transport`` is for tests and embedding.
    """

    def __init__(
        self, base_url: str, api_key: Secret | None, *, timeout: float,
        backoff: BackoffPolicy, max_concurrency: int, rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout
        self.backoff = backoff
        self.max_concurrency = max_concurrency
        self._rng = rng or random.Random()
        self._transport = transport
        self._limiter: anyio.CapacityLimiter | None = None

    def __repr__(self) -> str:
        return f"ChatClient({self.base_url!r})"

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        # Made on first use, inside the event loop that will use it.
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_concurrency)
        return self._limiter

    def _client(self) -> httpx.AsyncClient:
        headers = {"Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key.reveal()}"
        return httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(self.timeout), transport=self._transport,
            follow_redirects=False, trust_env=False,
        )

    async def complete(self, body: Mapping[str, Any], *, retries: int = 0) -> Completion:
        """POST ``body`` to ``/chat/completions``; the first choice, or AiUnavailable.
        ``retries`` is for a customer waiting live only (see the module docstring)."""
        retries = min(retries, MAX_LIVE_RETRIES)
        attempt = 1
        while True:
            try:
                data = await self._request("POST", "/chat/completions", body)
                break
            except AiUnavailable as exc:
                wait = self._live_wait(exc, attempt, retries)
                if wait is None:
                    raise _final(exc, attempt, self.backoff.cap) from None
                log.info("%s; trying again in %.2fs", exc, wait)
                await anyio.sleep(wait)
                attempt += 1
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            raise AiUnavailable("the server's answer has no choices")
        message = choices[0].get("message")
        if not isinstance(message, Mapping):
            raise AiUnavailable("the server's answer has no message")
        finish = choices[0].get("finish_reason")
        return Completion(message, parse_usage(data), finish if isinstance(finish, str) else "")

    def _live_wait(self, failure: AiUnavailable, attempt: int, retries: int) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up: after a
        failure no retry can mend, once the retries are spent, or when the server asks for
        a longer wait than the cap (the customer is better served by a human now)."""
        hint = failure.retry_after
        if not failure.retryable or attempt > retries or (hint or 0.0) > self.backoff.cap:
            return None
        return max(backoff_delay(self.backoff, attempt, self._rng), hint or 0.0)

    async def models(self) -> list[str]:
        """The model ids ``GET /models`` lists."""
        data = await self._request("GET", "/models", None)
        listed = data.get("data")
        if not isinstance(listed, list):
            raise AiUnavailable("the server's model list has no data")
        return [m["id"] for m in listed if isinstance(m, Mapping) and isinstance(m.get("id"), str)]

    async def _request(
        self, method: str, path: str, body: Mapping[str, Any] | None
    ) -> Mapping[str, Any]:
        """One attempt: the answer's JSON object, or AiUnavailable."""
        url = self.base_url + path
        try:
            async with self._client() as client, self.limiter:
                # httpx times each read; this bounds the whole call, slow trickle too.
                with anyio.fail_after(self.timeout):
                    response = await client.request(method, url, json=body)
        except (httpx.TimeoutException, TimeoutError):
            raise AiUnavailable(f"no answer from {url} within {self.timeout:g}s",
                                retryable=True) from None
        except httpx.TransportError as exc:
            raise AiUnavailable(f"cannot reach {url} ({type(exc).__name__})",
                                retryable=True) from None
        if response.status_code == 200:
            return self._json(response, url)
        status = response.status_code
        problem = f"{url} answered HTTP {status}"
        if status in _RETRYABLE_STATUS:
            raise AiUnavailable(problem, status=status, retryable=True,
                                retry_after=retry_after_seconds(response.headers.get("Retry-After")))
        if status in (401, 403):
            problem += " (check api_key)"
        raise AiUnavailable(problem + _error_detail(response), status=status)

    @staticmethod
    def _json(response: httpx.Response, url: str) -> Mapping[str, Any]:
        try:
            data = read_json(response.content, what="the answer")
        except JsonInputError as exc:
            raise AiUnavailable(f"{url} answered with something other than JSON ({exc})") from None
        if not isinstance(data, dict):
            raise AiUnavailable(f"{url} answered with JSON that is not an object")
        return data
