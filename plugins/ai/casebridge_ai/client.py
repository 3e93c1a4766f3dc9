"""An async client for OpenAI-compatible ``/chat/completions`` and ``/models`` endpoints.

What a caller can expect from :meth:`ChatClient.complete`:

* 429, 5xx, timeouts and connection failures are retried ``retries`` times with
  exponential backoff and jitter; a ``Retry-After`` is honoured as a minimum wait, and one
  longer than the backoff cap ends the retries at once (a customer is waiting);
* at most ``max_concurrency`` requests are in flight per client; waiting between retries
  does not hold a slot;
* every failure is raised as :class:`AiUnavailable` whose message names what went wrong and
  never contains the API key or any conversation text.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from casebridge.backoff import BackoffPolicy, RandomSource, delay, retry_after_seconds
from casebridge.json_input import JsonInputError, loads
from casebridge.secrets import Secret

from .usage import Usage, parse_usage

__all__ = ["AiUnavailable", "ChatClient", "Completion"]

log = logging.getLogger("casebridge.ai")

_RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})


class AiUnavailable(Exception):
    """The endpoint gave no usable answer; ``str()`` says why (safe to log and show).
    ``status`` is the HTTP status when the server answered."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Completion:
    """The first choice's ``message`` as the server sent it, and the usage."""

    message: Mapping[str, Any]
    usage: Usage
    finish_reason: str = ""


def _error_detail(response: httpx.Response) -> str:
    # OpenAI-style {"error": {"message": ...}}; anything else is not shown (it may be HTML).
    try:
        body = loads(response.content)
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    return f": {' '.join(message.split())[:200]}" if isinstance(message, str) else ""


class ChatClient:
    """Calls one OpenAI-compatible API root (``base_url``, e.g. ``http://127.0.0.1:8000/v1``).

    Opens a connection pool per call (a completion takes seconds, a handshake milliseconds),
    so there is nothing to close. ``transport`` is for tests and embedding.
    """

    def __init__(
        self, base_url: str, api_key: Secret | None, *, timeout: float, retries: int,
        backoff: BackoffPolicy, max_concurrency: int, rng: RandomSource | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self.timeout = timeout
        self.retries = retries
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

    async def complete(self, body: Mapping[str, Any]) -> Completion:
        """POST ``body`` to ``/chat/completions``; the first choice, or AiUnavailable."""
        data = await self._request("POST", "/chat/completions", body)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            raise AiUnavailable("the server's answer has no choices")
        message = choices[0].get("message")
        if not isinstance(message, Mapping):
            raise AiUnavailable("the server's answer has no message")
        finish = choices[0].get("finish_reason")
        return Completion(message, parse_usage(data), finish if isinstance(finish, str) else "")

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
        url = self.base_url + path
        async with self._client() as client:
            attempt = 0
            while True:
                attempt += 1
                wait_hint: float | None = None
                try:
                    async with self.limiter:
                        # httpx times each read; this bounds the whole call, slow trickle too.
                        with anyio.fail_after(self.timeout):
                            response = await client.request(method, url, json=body)
                except (httpx.TimeoutException, TimeoutError):
                    problem = f"no answer from {url} within {self.timeout:g}s"
                except httpx.TransportError as exc:
                    problem = f"cannot reach {url} ({type(exc).__name__})"
                else:
                    if response.status_code == 200:
                        return self._json(response, url)
                    problem = f"{url} answered HTTP {response.status_code}"
                    if response.status_code not in _RETRIED_STATUS:
                        if response.status_code in (401, 403):
                            problem += " (check api_key)"
                        raise AiUnavailable(problem + _error_detail(response),
                                            status=response.status_code)
                    wait_hint = retry_after_seconds(response.headers.get("Retry-After"))
                if attempt > self.retries:
                    tries = f" after {attempt} attempts" if attempt > 1 else ""
                    raise AiUnavailable(problem + tries)
                if wait_hint is not None and wait_hint > self.backoff.cap:
                    raise AiUnavailable(f"{problem}; the server asks to wait {wait_hint:g}s")
                wait = max(delay(self.backoff, attempt, self._rng), wait_hint or 0.0)
                log.info("%s; retrying in %.2fs", problem, wait)
                await anyio.sleep(wait)

    @staticmethod
    def _json(response: httpx.Response, url: str) -> Mapping[str, Any]:
        try:
            data = loads(response.content, what="the answer")
        except JsonInputError as exc:
            raise AiUnavailable(f"{url} answered with something other than JSON ({exc})") from None
        if not isinstance(data, dict):
            raise AiUnavailable(f"{url} answered with JSON that is not an object")
        return data
