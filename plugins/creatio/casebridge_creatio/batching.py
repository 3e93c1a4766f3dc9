"""Creatio's JSON ``$batch``: the requests one call carries and the answers it returns.

Pure: builds the body of one ``POST $batch`` and reads its answer; the client sends it.
At most :data:`BATCH_LIMIT` requests go in one call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BATCH_LIMIT", "BatchRequest", "BatchResponse", "batch_answers", "batch_items"]

BATCH_LIMIT = 100
_ITEM_TYPE = "application/json;odata.metadata=minimal"


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


def batch_items(chunk: Sequence[BatchRequest], offset: int) -> list[dict[str, Any]]:
    """The ``requests`` list of one ``$batch`` body; a request without an id gets its
    position in the whole batch (``offset`` + its index in ``chunk``)."""
    items = []
    for index, request in enumerate(chunk):
        item: dict[str, Any] = {
            "id": request.id or str(offset + index),
            "method": request.method,
            "url": request.url,
            "headers": {"Content-Type": _ITEM_TYPE},
        }
        if request.body is not None:
            item["body"] = dict(request.body)
        if request.atomicity_group:
            item["atomicityGroup"] = request.atomicity_group
        items.append(item)
    return items


def batch_answers(raw: Sequence[Any], items: Sequence[Mapping[str, Any]]) -> list[BatchResponse]:
    """The answers in a ``$batch`` answer's ``responses`` list, in the order of ``items``
    (answers Creatio did not send are simply absent)."""
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
