"""An async client for Creatio's OData 4 API: sign-in, errors, ``$batch``, files.

One :class:`CreatioClient` holds one connection pool; use it as an async context manager or
call :meth:`CreatioClient.aclose`. Every method makes one attempt; retrying is the outbox's
(a job that raises TransientError runs again later, with backoff). What a caller can expect:

* a 429/5xx answer or a connection failure raises
  :class:`~casebridge.plugin.TransientError` (with Creatio's ``Retry-After`` as its
  ``retry_after``);
* a 429/503 with ``Retry-After`` holds back every request of this client (every outbox
  worker) until then, not only the one that got it: a request waits at that gate at most
  ``max_retry_wait`` seconds, and a longer wait is handed to the outbox at once. At most
  ``max_concurrency`` requests are in flight at any time;
* a 401 signs in again and sends the request once more; a 401 again is a TransientError;
* any other 4xx raises :class:`CreatioError` (a :class:`~casebridge.plugin.PermanentError`);
* a timeout or dropped connection after a non-idempotent write was sent raises
  :class:`~casebridge.plugin.AmbiguousWriteError` instead of writing twice — except
  :meth:`create` with a client-chosen ``Id``, which looks the record up and carries on.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

import anyio
import httpx
from casebridge.plugin import AmbiguousWriteError, CheckResult, ShardedTransport, TransientError

from . import odata
from .answers import CreatioError, CreatioHtmlError, answer_json, answer_message, error_message
from .auth import (
    Authenticator,
    CreatioAuthError,
    looks_like_html,
    make_authenticator,
    retry_after,
)
from .batching import BATCH_LIMIT, BatchRequest, BatchResponse, batch_answers, batch_items
from .settings import DEFAULT_NAME, CreatioSettings

__all__ = [
    "BATCH_LIMIT",
    "BatchRequest",
    "BatchResponse",
    "CreatioAuthError",
    "CreatioClient",
    "CreatioError",
    "CreatioHtmlError",
    "error_message",
]

log = logging.getLogger("casebridge.creatio")

# Failures before anything reached the server: nothing was written.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Gateway answers that may come after the request reached Creatio.
_MAYBE_PROCESSED = (502, 504)
_IDEMPOTENT = ("GET", "PATCH", "DELETE", "PUT")
_JSON = "application/json"

Sleep = Callable[[float], Awaitable[None]]


class CreatioClient:
    """The OData client. ``transport`` replaces the network (tests, the in-process sandbox);
    ``sleep`` and ``clock`` replace waiting at the Retry-After gate and the monotonic clock
    so tests need not wait."""

    def __init__(
        self,
        settings: CreatioSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = anyio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        # Keep-alive connections for max_concurrency requests, in small pools (see
        # ShardedTransport: one large httpcore pool costs CPU on every request).
        self._transport = transport or ShardedTransport(settings.max_concurrency)
        self._timeout = {"timeout": httpx.Timeout(settings.timeout).as_dict()}
        self._parsed: dict[str, httpx.URL] = {}
        # The client signs in (auth) and owns the connections; API requests skip it (_send).
        self._http = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(settings.timeout),
            headers=_HEADERS,
            follow_redirects=False,
            # Creatio's cookies are the authenticator's: it keeps and sends them itself. A
            # jar would only parse every answer and copy itself into every request.
            cookies=httpx.Cookies(_NoCookies()),
        )
        self._auth: Authenticator = make_authenticator(settings, clock)
        self._sleep = sleep
        self._clock = clock
        self._limiter: anyio.CapacityLimiter | None = None
        # When a 429/503 asked to wait (Retry-After), no request of any worker goes out
        # before this moment (on ``clock``): Creatio is slowed down as a whole.
        self._gate_until = 0.0

    def __repr__(self) -> str:
        return f"CreatioClient({self.settings.url}, auth={self.settings.auth})"

    async def __aenter__(self) -> CreatioClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the public operations ------------------------------------------------------------

    async def get(
        self, entity: str, id: str, select: Sequence[str] | None = None
    ) -> dict[str, Any] | None:
        """The record ``entity(id)``, or None when Creatio has no such record."""
        query = odata.query_string(select=select) if select else ""
        response = await self._call(
            "GET", _key_path(entity, id), entity=entity, operation="read", query=query
        )
        if response.status_code == 404 and not looks_like_html(response):
            return None
        body = self._check(response, entity, "read")
        return body if isinstance(body, dict) else None

    async def query(
        self,
        entity: str,
        filter: odata.Expr | None = None,
        select: Sequence[str] | None = None,
        orderby: str | Sequence[str] | None = None,
        top: int | None = None,
        skip: int | None = None,
        expand: str | Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """The records of ``entity`` matching ``filter`` (``value`` of the answer)."""
        query = odata.query_string(
            filter=filter, select=select, orderby=orderby, top=top, skip=skip, expand=expand
        )
        response = await self._call(
            "GET", _entity_path(entity), entity=entity, operation="query", query=query
        )
        body = self._check(response, entity, "query")
        rows = body.get("value") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            raise CreatioError(entity, "query", response.status_code, "no 'value' in the answer")
        return [row for row in rows if isinstance(row, dict)]

    async def create(self, entity: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST a new record and return it as Creatio stored it.

        With an ``Id`` in ``body`` the write is recognisable: after a failure that may have
        written it (a lost answer, a 5xx such as Creatio's duplicate-key refusal) or a 400/409
        the record is read back by that Id, and returned when it is there, instead of being
        written twice. Without one, a write that may have landed is an AmbiguousWriteError.
        """
        record_id = body.get("Id")
        if record_id is not None and not (isinstance(record_id, str)
                                          and odata.is_guid(record_id)):
            raise ValueError(f"{entity}.Id must be a GUID, got {record_id!r}")
        try:
            response = await self._call(
                "POST", _entity_path(entity), entity=entity, operation="create",
                json_body=body, idempotent=record_id is not None,
            )
        except TransientError as exc:
            # Throttled (a Retry-After): nothing was written, and a read would wait too.
            if record_id is None or exc.retry_after is not None:
                raise
            existing = await self._written(entity, record_id, exc)
            if existing is None:
                raise
            return existing
        if record_id is not None and response.status_code in (400, 409):
            existing = await self._written(entity, record_id, None)
            if existing is not None:
                return existing
        created = self._check(response, entity, "create")
        return created if isinstance(created, dict) else dict(body)

    async def _written(
        self, entity: str, record_id: str, failure: TransientError | None
    ) -> dict[str, Any] | None:
        """The record an earlier or the failed attempt wrote under ``record_id``, or None.
        A read that fails too raises ``failure`` (the write's own error) when there is one."""
        try:
            existing = await self.get(entity, record_id)
        except TransientError:
            if failure is None:
                raise
            raise failure from None
        if existing is not None:
            log.info("%s %s was already written; not written again", entity, record_id)
        return existing

    async def update(self, entity: str, id: str, body: Mapping[str, Any]) -> None:
        """PATCH the given columns of ``entity(id)``; a missing record is a CreatioError."""
        response = await self._call(
            "PATCH", _key_path(entity, id), entity=entity, operation="update", json_body=body
        )
        self._check(response, entity, "update")

    async def delete(self, entity: str, id: str) -> None:
        """DELETE ``entity(id)``; a record already gone counts as deleted."""
        response = await self._call(
            "DELETE", _key_path(entity, id), entity=entity, operation="delete"
        )
        if response.status_code != 404 or looks_like_html(response):
            self._check(response, entity, "delete")

    async def batch(
        self, requests: Sequence[BatchRequest], continue_on_error: bool = False
    ) -> list[BatchResponse]:
        """Send ``requests`` as ``$batch`` calls of at most 100, in order.

        Without ``continue_on_error`` Creatio stops at the first failed request, and so does
        this method: later chunks are not sent, and the answer lists only what was tried.
        A batch is never retried after it may have been sent (AmbiguousWriteError).
        """
        results: list[BatchResponse] = []
        for start in range(0, len(requests), BATCH_LIMIT):
            chunk = requests[start : start + BATCH_LIMIT]
            answers = await self._batch_chunk(chunk, start, continue_on_error)
            results.extend(answers)
            stopped = len(answers) < len(chunk) or any(not a.ok for a in answers)
            if stopped and not continue_on_error:
                break
        return results

    async def upload_file(
        self,
        *,
        entity: str,
        file_id: str,
        parent_column: str,
        parent_id: str,
        name: str,
        content_type: str,
        data: bytes,
    ) -> None:
        """Upload ``data`` into the ``Data`` column of the file row ``entity(file_id)``
        (``CaseFile``, ``ActivityFile``) through FileApiService, in one piece."""
        odata.Guid(file_id)
        odata.Guid(parent_id)
        size = len(data)
        params = urlencode(
            {
                "fileId": file_id,
                "totalFileLength": size,
                "mimeType": content_type or "application/octet-stream",
                "fileName": name,
                "columnName": "Data",
                "entitySchemaName": entity,
                "parentColumnName": parent_column,
                "parentColumnValue": parent_id,
            },
            quote_via=quote,
        )
        url = f"{self.settings.url}{self.settings.odata_prefix}/rest/FileApiService/UploadFile"
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"bytes 0-{max(size - 1, 0)}/{size}",
        }
        # Writing the same bytes into the same file row again changes nothing: idempotent.
        response = await self._call(
            "POST",
            url,
            entity=entity,
            operation="upload a file to",
            query=params,
            content=data,
            headers=headers,
            idempotent=True,
        )
        self._check(response, entity, "upload a file to")

    async def check(self, name: str = DEFAULT_NAME) -> CheckResult:
        """Whether the settings work: ``ok`` with "Active", or exactly what failed, as the
        check of the plugin named ``name``."""
        try:
            await self.query("CaseStatus", select=["Id"], top=1)
        except CreatioAuthError as exc:
            return CheckResult(name, False, str(exc))
        except CreatioHtmlError as exc:
            return CheckResult(name, False, exc.message)
        except CreatioError as exc:
            if exc.status == 403:
                detail = (
                    f"signed in, but the OData API refused access (HTTP 403: {exc.message}); "
                    "give the integration user the CanUseODataService operation permission"
                )
            elif exc.status == 404:
                detail = (
                    f"no Creatio OData API at {self.settings.odata_root} (HTTP 404); check url "
                    'and odata_prefix ("/0", or "" on .NET 8 hosts)'
                )
            else:
                detail = str(exc)
            return CheckResult(name, False, detail)
        except TransientError as exc:
            return CheckResult(
                name, False, f"Creatio at {self.settings.url} unreachable: {exc}"
            )
        return CheckResult(name, True, "Active")

    async def metadata(self) -> bytes:
        """The service's ``$metadata`` CSDL document (XML), as Creatio sends it."""
        response = await self._call(
            "GET", "$metadata", entity="$metadata", operation="read",
            headers={"Accept": "application/xml"},
        )
        # The document is XML, so the usual "a page instead of JSON" test does not apply.
        is_page = "html" in response.headers.get("content-type", "").lower()
        if is_page or response.status_code >= 400:
            self._check(response, "$metadata", "read")
        return response.content

    # -- plumbing -----------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return path if "://" in path else f"{self.settings.odata_root}/{path}"

    def _get_limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.settings.max_concurrency)
        return self._limiter

    def _close_gate(self, seconds: float) -> None:
        """Hold every request back for ``seconds`` (a Retry-After Creatio sent)."""
        self._gate_until = max(self._gate_until, self._clock() + seconds)

    async def _pass_gate(self, what: str) -> None:
        """Wait out a Retry-After another request received, at most ``max_retry_wait``
        seconds; a longer one goes to the outbox at once, as the request's own would."""
        remaining = self._gate_until - self._clock()
        if remaining <= 0:
            return
        if remaining > self.settings.max_retry_wait:
            raise TransientError(
                f"Creatio asked to wait {remaining:.0f}s before {what}", retry_after=remaining
            )
        await self._sleep(remaining)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        entity: str,
        operation: str,
        query: str = "",
        json_body: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send one request, signing in first when needed and once more after a refused
        session; return the answer (any status but 401/429/5xx) for the caller to judge.
        Raises TransientError (AmbiguousWriteError when a write may have landed)."""
        if idempotent is None:
            idempotent = method in _IDEMPOTENT
        what = f"{operation} {entity}"
        url: str | httpx.URL = self._url(path) + (f"?{query}" if query else "")
        if not query and "(" not in path:
            # The same few URLs ($batch above all, entity sets), each parsed once: a parse is
            # half the cost of building a request. Keyed paths (one per record) are not kept.
            url = self._parsed.get(url) or self._parsed.setdefault(url, httpx.URL(url))
        request_headers = dict(headers or {})
        if json_body is not None:
            content = _encode(json_body)
            request_headers = {"Content-Type": _JSON, **request_headers}
        send = (method, url, content, request_headers, what, idempotent)
        response, generation = await self._send(*send)
        if response.status_code == 401 or (
            response.status_code == 403 and self._auth.renew_on_403
        ):
            # Creatio ends sessions (and a re-login leaves a stale BPMCSRF): sign in again,
            # once; refused credentials fail the sign-in itself, for good.
            log.info("Creatio answered %s to %s; signing in again", response.status_code, what)
            with self._sign_in_errors():
                await self._auth.renew(self._http, generation)
            response, _ = await self._send(*send)
            if response.status_code == 401:
                raise TransientError(
                    f"Creatio refused the session for {what} right after signing in again: "
                    f"{answer_message(response) or 'HTTP 401'}"
                )
        self._raise_if_transient(response, what, idempotent)
        log.debug("Creatio %s %s -> %s", method, path, response.status_code)
        return response

    async def _send(
        self, method: str, url: str | httpx.URL, content: bytes | None, headers: Mapping[str, str],
        what: str, idempotent: bool,
    ) -> tuple[httpx.Response, int]:
        """One request through the gate and the concurrency cap, with the current sign-in;
        the answer and the sign-in generation it was sent with."""
        await self._pass_gate(what)
        with self._sign_in_errors():
            auth_headers = await self._auth.headers(self._http)
        generation = self._auth.generation
        try:
            async with self._get_limiter():
                response = await self._exchange(httpx.Request(
                    method, url, content=content, headers={**_HEADERS, **auth_headers, **headers},
                    extensions=self._timeout))
        except httpx.TransportError as exc:
            reason = type(exc).__name__
            if not idempotent and not isinstance(exc, _NOT_SENT):
                raise AmbiguousWriteError(
                    f"Creatio: no answer to {what} after it was sent ({reason}); "
                    "look the record up before writing it again"
                ) from None
            raise TransientError(f"Creatio at {self.settings.url} unreachable ({reason})") from None
        self._auth.absorb(response)
        return response, generation

    async def _exchange(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` as it is and read the whole answer, straight through the transport:
        what ``AsyncClient.send`` adds (cookie jar, auth flow, redirects, event hooks, a log
        line) is not used here and cost more CPU than the rest of the request (measured:
        some 250 us of 300 per request)."""
        if self._http.is_closed:
            raise RuntimeError("the Creatio client is closed")
        response = await self._transport.handle_async_request(request)
        response.request = request
        try:
            await response.aread()
        except BaseException:
            await response.aclose()
            raise
        return response

    @contextlib.contextmanager
    def _sign_in_errors(self) -> Iterator[None]:
        """What a failed sign-in means for the attempt: unreachable is transient, and a
        throttled one (a Retry-After) holds back every request, as a throttled call does."""
        try:
            yield
        except httpx.TransportError as exc:
            raise TransientError(
                f"Creatio at {self.settings.url} unreachable to sign in ({type(exc).__name__})"
            ) from None
        except TransientError as exc:
            if exc.retry_after is not None:
                self._close_gate(exc.retry_after)
            raise

    def _raise_if_transient(self, response: httpx.Response, what: str, idempotent: bool) -> None:
        """Raise what a 429 or 5xx answer stands for; a Retry-After on a 429/503 closes the
        gate for every request of this client."""
        status = response.status_code
        if status != 429 and status < 500:
            return
        if not idempotent and status in _MAYBE_PROCESSED:
            raise AmbiguousWriteError(
                f"Creatio: gateway answered {status} to {what}; it may have been "
                "written, look it up before writing it again"
            )
        wait = retry_after(response)
        if wait is not None and status in (429, 503):
            self._close_gate(wait)
        raise TransientError(
            f"Creatio answered HTTP {status} to {what}: "
            f"{answer_message(response) or response.reason_phrase}",
            retry_after=wait,
        )

    def _check(self, response: httpx.Response, entity: str, operation: str) -> Any:
        """The answer's JSON (None when empty), or the CreatioError it stands for."""
        return answer_json(response, entity, operation, self.settings.odata_root)

    async def _batch_chunk(
        self, chunk: Sequence[BatchRequest], offset: int, continue_on_error: bool
    ) -> list[BatchResponse]:
        items = batch_items(chunk, offset)
        headers = {"Prefer": "continue-on-error"} if continue_on_error else {}
        read_only = all(r.method == "GET" for r in chunk)
        response = await self._call(
            "POST",
            "$batch",
            entity="$batch",
            operation="send",
            json_body={"requests": items},
            headers=headers,
            idempotent=read_only,
        )
        body = self._check(response, "$batch", "send")
        raw = body.get("responses") if isinstance(body, dict) else None
        if not isinstance(raw, list):
            raise CreatioError("$batch", "send", response.status_code, "no 'responses' list")
        return batch_answers(raw, items)


_HEADERS = {"Accept": _JSON, "User-Agent": "casebridge"}


class _NoCookies(http.cookiejar.CookieJar):
    """A cookie jar that keeps nothing (see CreatioClient: the authenticator keeps them)."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        return None


def _encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _entity_path(entity: str) -> str:
    if not entity.replace("_", "a").isalnum() or not entity[:1].isalpha():
        raise ValueError(f"{entity!r} is not a Creatio entity name")
    return entity


def _key_path(entity: str, id: str) -> str:
    return f"{_entity_path(entity)}({odata.Guid(id).value})"
