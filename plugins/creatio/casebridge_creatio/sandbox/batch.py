"""OData 4 JSON ``$batch``: up to 100 requests run in order against the engine.

Execution stops at the first 4xx/5xx answer unless the caller sent ``Prefer:
continue-on-error``. Requests sharing an ``atomicityGroup`` succeed or fail together: when one
fails, the changes of the others are rolled back and their answers become 424.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .engine import ODataEngine, Reply
from .errors import ODataError, error_body

MAX_REQUESTS = 100


@dataclass(frozen=True, slots=True)
class BatchItem:
    id: str
    method: str
    url: str
    body: Any
    group: str | None


def parse_batch(data: Any) -> list[BatchItem]:
    """Validate a ``$batch`` body; :class:`ODataError` 400 names what is wrong."""
    if not isinstance(data, dict) or not isinstance(data.get("requests"), list):
        raise ODataError(400, "A JSON batch must be an object with a 'requests' array.")
    requests = data["requests"]
    if len(requests) > MAX_REQUESTS:
        raise ODataError(400, f"The batch holds {len(requests)} requests; at most "
                         f"{MAX_REQUESTS} are allowed.")
    items: list[BatchItem] = []
    seen: set[str] = set()
    closed_groups: set[str] = set()
    for index, raw in enumerate(requests):
        if not isinstance(raw, dict):
            raise ODataError(400, f"Batch request #{index} is not a JSON object.")
        for name in ("id", "method", "url"):
            if not isinstance(raw.get(name), str) or not raw[name]:
                raise ODataError(400, f"Batch request #{index} lacks a string '{name}'.")
        if raw["id"] in seen:
            raise ODataError(400, f"Batch request id '{raw['id']}' is used twice.")
        seen.add(raw["id"])
        group = raw.get("atomicityGroup")
        if group is not None and not isinstance(group, str):
            raise ODataError(400, f"Batch request '{raw['id']}' has a non-string "
                             "atomicityGroup.")
        previous = items[-1].group if items else None
        if previous is not None and previous != group:
            closed_groups.add(previous)
        if group in closed_groups:
            raise ODataError(400, f"The requests of atomicity group '{group}' must be "
                             "adjacent.")
        items.append(BatchItem(raw["id"], raw["method"].upper(), raw["url"], raw.get("body"),
                               group))
    return items


def run_batch(engine: ODataEngine, items: list[BatchItem], *, continue_on_error: bool,
              actor: str, service_root: str, odata_root: str,
              ignore_client_ids: bool = False) -> list[dict[str, Any]]:
    """Execute the items; returns the ``responses`` array. Events of rolled-back requests
    are dropped from ``engine.pending_events``. ``ignore_client_ids`` drops the ``Id`` of
    every POST body, as a server that chooses its own ids does."""
    if ignore_client_ids:
        items = [replace(item, body=without_id(item.body)) if item.method == "POST" else item
                 for item in items]
    responses: list[dict[str, Any]] = []
    group_start: dict[str, tuple[int, int, int]] = {}  # group -> (store mark, events, index)
    failed_groups: set[str] = set()
    for item in items:
        if item.group is not None and item.group in failed_groups:
            responses.append(_answer(item.id, _failed_dependency(item.group)))
            continue
        if item.group is not None and item.group not in group_start:
            group_start[item.group] = (engine.store.mark(), len(engine.pending_events),
                                       len(responses))
        reply = _execute(engine, item, actor, service_root, odata_root)
        responses.append(_answer(item.id, reply))
        if reply.status < 400:
            continue
        if item.group is not None:
            mark, events, first = group_start[item.group]
            engine.store.rollback_to(mark)
            del engine.pending_events[events:]
            failed_groups.add(item.group)
            for i in range(first, len(responses) - 1):
                if items[i].group == item.group:
                    responses[i] = _answer(items[i].id, _failed_dependency(item.group))
        if not continue_on_error:
            break
    engine.store.forget_journal()
    return responses


def _execute(engine: ODataEngine, item: BatchItem, actor: str, service_root: str,
             odata_root: str) -> Reply:
    parts = urlsplit(item.url)
    path = parts.path
    if parts.scheme or path.startswith("/"):
        prefix = odata_root + "/"
        if not path.startswith(prefix):
            return Reply(404, error_body(f"The URL '{item.url}' is not under the OData root "
                                         f"'{odata_root}'.", code="NotFound"))
        path = path[len(prefix):]
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    body: bytes | None = None
    if item.body is not None:
        body = item.body.encode() if isinstance(item.body, str) else json.dumps(item.body).encode()
    return engine.handle(item.method, path, query, body, actor=actor, service_root=service_root)


def without_id(body: Any) -> Any:
    """A JSON POST body (parsed or text) without its ``Id``; anything else unchanged."""
    parsed = body
    if isinstance(body, str | bytes):
        try:
            parsed = json.loads(body)
        except ValueError:
            return body
    if not isinstance(parsed, dict) or "Id" not in parsed:
        return body
    return {k: v for k, v in parsed.items() if k != "Id"}


def _failed_dependency(group: str) -> Reply:
    return Reply(424, error_body(f"Not applied: another request of atomicity group '{group}' "
                                 "failed, so the group was rolled back.",
                                 code="FailedDependency"))


def _answer(request_id: str, reply: Reply) -> dict[str, Any]:
    headers = dict(reply.headers)
    body: Any = reply.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    elif body is not None:
        headers.setdefault("Content-Type", "application/json; odata.metadata=minimal")
    answer: dict[str, Any] = {"id": request_id, "status": reply.status, "headers": headers}
    if body is not None:
        answer["body"] = body
    return answer
