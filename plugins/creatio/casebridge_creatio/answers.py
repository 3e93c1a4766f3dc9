"""Reading Creatio's answers: the errors they stand for and the JSON they carry.

Pure: judges an ``httpx.Response`` already received, sends nothing. A web page where JSON
was expected (a wrong URL, a user without the OData permission) is told apart from an
OData error body, whose innermost message is the one worth showing.
"""

from __future__ import annotations

from typing import Any

import httpx
from casebridge.plugin import JsonInputError, PermanentError, read_json

from .auth import looks_like_html

__all__ = ["CreatioError", "CreatioHtmlError", "answer_json", "answer_message", "error_message"]


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


def answer_json(response: httpx.Response, entity: str, operation: str, odata_root: str) -> Any:
    """The answer's JSON (None when empty), or the CreatioError it stands for."""
    status = response.status_code
    if looks_like_html(response):
        raise CreatioHtmlError(
            entity,
            operation,
            status,
            f"Creatio answered with a web page instead of JSON (HTTP {status}) from "
            f"{odata_root}; this is usually a wrong url or odata_prefix, "
            "or a user without the OData permission (CanUseODataService)",
        )
    if status >= 400:
        raise CreatioError(entity, operation, status, answer_message(response) or "no detail")
    if not response.content:
        return None
    try:
        return read_json(response.content, what="the answer")
    except JsonInputError as exc:
        raise CreatioError(entity, operation, status, str(exc)) from None


def answer_message(response: httpx.Response) -> str:
    """Creatio's innermost useful error message in an answer, or ""."""
    if looks_like_html(response):
        return ""
    try:
        body = read_json(response.content or b"null")
    except ValueError:
        return response.text.strip()[:300]
    return error_message(body)


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
