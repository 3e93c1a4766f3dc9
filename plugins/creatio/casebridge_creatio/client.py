"""An async client for Creatio's OData 4 API: sign-in, retries, errors, ``$batch``, files.

One :class:`CreatioClient` holds one connection pool; use it as an async context manager or
call :meth:`CreatioClient.aclose`. What a caller can expect from every method:

* a 429/503/5xx answer or a connection failure is retried with exponential backoff and
  jitter (honouring ``Retry-After``) up to ``settings.retries`` times, then raised as
  :class:`casebridge.errors.TransientError` so the outbox tries again later;
* a 429/503 with ``Retry-After`` holds back every request of this client (every outbox
  worker) until then, not only the one that got it; at most ``max_concurrency`` requests
  are in flight at any time;
* a 401 signs in again and retries once;
* any other 4xx raises :class:`CreatioError` (a :class:`casebridge.errors.PermanentError`);
* a timeout or dropped connection after a non-idempotent write was sent raises
  :class:`casebridge.errors.AmbiguousWriteError` instead of writing twice — except
  :meth:`create` with a client-chosen ``Id``, which looks the record up and carries on.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import anyio
import httpx
from casebridge.errors import AmbiguousWriteError, PermanentError, TransientError
from casebridge.http_pool import ShardedTransport
from casebridge.json_input import JsonInputError, loads
from casebridge.model import CheckResult

from . import odata
from .auth import (
    Authenticator,
    CreatioAuthError,
    looks_like_html,
    make_authenticator,
    retry_after,
)
from .settings import CreatioSettings

__all__ = [
    "BATCH_LIMIT",
    "BatchRequest",
    "BatchResponse",
    "CreatioAuthError",
    "CreatioClient",
    "CreatioError",
    "CreatioHtmlError",
]

log = logging.getLogger("casebridge.creatio")

BATCH_LIMIT = 100
# Failures before anything reached the server: safe to retry any request.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Gateway answers that may come after the request reached Creatio.
_MAYBE_PROCESSED = (502, 504)
_JSON = "application/json"


class CreatioError(PermanentError):
    """Creatio refused an operation. ``str()`` names the entity, the operation and
    Creatio's own message."""

    def __init__(self, entity: str, operation: str, status: int, message: str) -> None:
        self.entity = entity
        self.operation = operation
        self.status = status
        self.message = message
        super().__init__(f"Creatio refused to {operation} {entity} (HTTP {status}): {message}")


class CreatioHtmlError(CreatioError):
    """Creatio answered with a web page where JSON was expected."""


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One request inside a ``$batch``. ``url`` is relative to the OData root:
    ``"Case"`` or ``"Case(<guid>)"``."""

    method: str
    url: str
    body: Mapping[str, Any] | None = None
    id: str = ""
    atomicity_group: str = ""


@dataclass(frozen=True, slots=True)
class BatchResponse:
    id: str
    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


Sleep = Callable[[float], Awaitable[None]]


class CreatioClient:
    """The OData client. ``transport`` replaces the network (tests, the in-process sandbox);
    ``sleep``, ``clock`` and ``jitter`` replace waiting, the monotonic clock and the random
    backoff share so tests need not wait."""

    def __init__(
        self,
        settings: CreatioSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = anyio.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self._http = httpx.AsyncClient(
            # Keep-alive connections for max_concurrency requests, in small pools (see
            # casebridge.http_pool: one large httpcore pool costs CPU on every request).
            transport=transport or ShardedTransport(settings.max_concurrency),
            timeout=httpx.Timeout(settings.timeout),
            headers={"Accept": _JSON, "User-Agent": "casebridge"},
            follow_redirects=False,
        )
        self._auth: Authenticator = make_authenticator(settings, clock)
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter
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

        With an ``Id`` in ``body`` the write is recognisable: after an ambiguous failure or a
        duplicate-key refusal the record is read back by that Id instead of written twice.
        """
        record_id = body.get("Id")
        if not isinstance(record_id, str) or not odata.is_guid(record_id):
            if record_id is not None:
                raise ValueError(f"{entity}.Id must be a GUID, got {record_id!r}")
            response = await self._call(
                "POST", _entity_path(entity), entity=entity, operation="create", json_body=body
            )
            created = self._check(response, entity, "create")
            return created if isinstance(created, dict) else dict(body)
        # A client-chosen Id makes a repeated POST harmless (the key refuses a duplicate), so
        # every failure is followed by a read by that Id before the record is written again.
        attempt = 0
        while True:
            try:
                response = await self._call(
                    "POST",
                    _entity_path(entity),
                    entity=entity,
                    operation="create",
                    json_body=body,
                    idempotent=True,
                    retries=0,
                )
            except CreatioAuthError:
                raise
            except TransientError as exc:
                failure = exc
            else:
                if response.status_code < 400 or response.status_code not in (400, 409):
                    created = self._check(response, entity, "create")
                    return created if isinstance(created, dict) else dict(body)
                existing = await self.get(entity, record_id)
                if existing is not None:
                    log.info("%s %s already existed; not written again", entity, record_id)
                    return existing
                self._check(response, entity, "create")
            existing = await self.get(entity, record_id)
            if existing is not None:
                log.info("%s %s was written by an earlier attempt", entity, record_id)
                return existing
            wait = failure.retry_after
            if attempt >= self.settings.retries or (wait or 0) > self.settings.max_retry_wait:
                raise failure
            await self._sleep(wait if wait is not None else self._backoff(attempt))
            attempt += 1

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

    async def check(self) -> CheckResult:
        """Whether the settings work: ``ok`` with "Active", or exactly what failed."""
        try:
            await self.query("CaseStatus", select=["Id"], top=1)
        except CreatioAuthError as exc:
            return CheckResult("creatio", False, str(exc))
        except CreatioHtmlError as exc:
            return CheckResult("creatio", False, exc.message)
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
            return CheckResult("creatio", False, detail)
        except TransientError as exc:
            return CheckResult(
                "creatio", False, f"Creatio at {self.settings.url} unreachable: {exc}"
            )
        return CheckResult("creatio", True, "Active")

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
        """Wait out a Retry-After another request received; one longer than
        ``max_retry_wait`` goes to the outbox at once, as the request's own would."""
        remaining = self._gate_until - self._clock()
        if remaining <= 0:
            return
        if remaining > self.settings.max_retry_wait:
            raise TransientError(
                f"Creatio asked to wait {remaining:.0f}s before {what}", retry_after=remaining
            )
        await self._sleep(remaining)

    def _backoff(self, attempt: int) -> float:
        base = min(self.settings.backoff_max, self.settings.backoff * (2**attempt))
        return base * (0.5 + self._jitter() / 2)

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
        retries: int | None = None,
    ) -> httpx.Response:
        """Send one request with sign-in, re-sign-in on 401 and retries; return the answer
        (any status other than 401/429/5xx) for the caller to judge."""
        if idempotent is None:
            idempotent = method in ("GET", "PATCH", "DELETE", "PUT")
        url = self._url(path) + (f"?{query}" if query else "")
        what = f"{operation} {entity}"
        # Sign-ins this call has asked for. A 401 right after a successful sign-in is a
        # session that expired again (a busy instance, a restarted node), not refused
        # credentials (those fail the sign-in itself): sign in again, up to ``retries`` times.
        renewals = 0
        # The sign-in generation a 401 was answered to; the next pass signs in again.
        stale: int | None = None
        attempt = 0
        budget = self.settings.retries if retries is None else retries
        while True:
            failure: TransientError
            wait: float | None = None
            try:
                if stale is not None:
                    await self._auth.renew(self._http, stale)
                    stale = None
                await self._pass_gate(what)
                auth_headers = await self._auth.headers(self._http)
                generation = self._auth.generation
                request_headers = {**auth_headers, **(headers or {})}
                async with self._get_limiter():
                    response = await self._http.request(
                        method,
                        url,
                        content=_encode(json_body) if json_body is not None else content,
                        headers=(
                            {"Content-Type": _JSON, **request_headers}
                            if json_body is not None
                            else request_headers
                        ),
                    )
            except httpx.TransportError as exc:
                reason = type(exc).__name__
                if not idempotent and not isinstance(exc, _NOT_SENT):
                    raise AmbiguousWriteError(
                        f"Creatio: no answer to {what} after it was sent ({reason}); "
                        "look the record up before writing it again"
                    ) from None
                failure = TransientError(f"Creatio at {self.settings.url} unreachable ({reason})")
            except TransientError as exc:
                failure = exc
                wait = exc.retry_after
            else:
                self._auth.absorb(response)
                status = response.status_code
                if status == 401 or (status == 403 and self._auth.renew_on_403):
                    if renewals == 0 or (status == 401 and renewals <= self.settings.retries):
                        if renewals:
                            await self._sleep(self._backoff(renewals - 1))
                        renewals += 1
                        log.info("Creatio answered %s to %s; signing in again", status, what)
                        stale = generation
                        continue
                    if status == 401:
                        # Signing in worked each time (refused credentials fail there, for
                        # good), so this is a session that ends as it starts: worth trying
                        # again later, not a reason to lose the job.
                        raise TransientError(
                            f"Creatio refused the credentials for {what} even after signing "
                            f"in again {renewals} time(s): {self._message(response) or 'HTTP 401'}"
                        )
                    return response
                if status != 429 and status < 500:
                    log.debug("Creatio %s %s -> %s", method, path, status)
                    return response
                if not idempotent and status in _MAYBE_PROCESSED:
                    raise AmbiguousWriteError(
                        f"Creatio: gateway answered {status} to {what}; it may have been "
                        "written, look it up before writing it again"
                    )
                wait = retry_after(response)
                if wait is not None and status in (429, 503):
                    self._close_gate(wait)
                failure = TransientError(
                    f"Creatio answered HTTP {status} to {what}: "
                    f"{self._message(response) or response.reason_phrase}",
                    retry_after=wait,
                )
            if wait is not None and wait > self.settings.max_retry_wait:
                raise failure
            if attempt >= budget:
                raise failure
            delay = wait if wait is not None else self._backoff(attempt)
            attempt += 1
            log.warning("%s; retry %d in %.1fs", failure, attempt, delay)
            await self._sleep(delay)

    def _check(self, response: httpx.Response, entity: str, operation: str) -> Any:
        """The answer's JSON (None when empty), or the CreatioError it stands for."""
        status = response.status_code
        if looks_like_html(response):
            raise CreatioHtmlError(
                entity,
                operation,
                status,
                f"Creatio answered with a web page instead of JSON (HTTP {status}) from "
                f"{self.settings.odata_root}; this is usually a wrong url or odata_prefix, "
                "or a user without the OData permission (CanUseODataService)",
            )
        if status >= 400:
            raise CreatioError(entity, operation, status, self._message(response) or "no detail")
        if not response.content:
            return None
        try:
            return loads(response.content, what="the answer")
        except JsonInputError as exc:
            raise CreatioError(entity, operation, status, str(exc)) from None

    @staticmethod
    def _message(response: httpx.Response) -> str:
        """Creatio's innermost useful error message in an answer, or ""."""
        if looks_like_html(response):
            return ""
        try:
            body = loads(response.content or b"null")
        except ValueError:
            return response.text.strip()[:300]
        return error_message(body)

    async def _batch_chunk(
        self, chunk: Sequence[BatchRequest], offset: int, continue_on_error: bool
    ) -> list[BatchResponse]:
        items = []
        for index, request in enumerate(chunk):
            item: dict[str, Any] = {
                "id": request.id or str(offset + index),
                "method": request.method,
                "url": request.url,
                "headers": {"Content-Type": f"{_JSON};odata.metadata=minimal"},
            }
            if request.body is not None:
                item["body"] = dict(request.body)
            if request.atomicity_group:
                item["atomicityGroup"] = request.atomicity_group
            items.append(item)
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
        answers = []
        for entry in raw:
            if not isinstance(entry, dict):
                continue
            entry_headers = entry.get("headers")
            answers.append(
                BatchResponse(
                    id=str(entry.get("id", "")),
                    status=int(entry.get("status", 0)),
                    body=entry.get("body"),
                    headers=entry_headers if isinstance(entry_headers, dict) else {},
                )
            )
        order = {item["id"]: n for n, item in enumerate(items)}
        answers.sort(key=lambda a: order.get(a.id, len(order)))
        return answers


def error_message(body: Any) -> str:
    """The innermost non-empty message of an OData (or Creatio service) error body."""
    if not isinstance(body, dict):
        return ""
    found = ""
    node: Any = body.get("error", body)
    seen = 0
    while isinstance(node, dict) and seen < 20:
        seen += 1
        for key in ("message", "Message", "ExceptionMessage"):
            text = node.get(key)
            if isinstance(text, dict):
                text = text.get("value")
            if isinstance(text, str) and text.strip():
                found = text.strip()
                break
        nxt = None
        for key in ("innererror", "internalexception", "InnerException", "Exception"):
            if isinstance(node.get(key), dict):
                nxt = node[key]
                break
        node = nxt
    return found


def _encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _entity_path(entity: str) -> str:
    if not entity.replace("_", "a").isalnum() or not entity[:1].isalpha():
        raise ValueError(f"{entity!r} is not a Creatio entity name")
    return entity


def _key_path(entity: str, id: str) -> str:
    return f"{_entity_path(entity)}({odata.Guid(id).value})"
