"""Error answers in the shape Creatio's OData 4 service gives them."""

from __future__ import annotations

from typing import Any


class ODataError(Exception):
    """An OData request failed with ``status``; ``message`` is safe to show the caller."""

    def __init__(self, status: int, message: str, *, code: str = "",
                 exception_type: str = "Terrasoft.Common.Exception") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "Error")
        self.exception_type = exception_type

    def body(self) -> dict[str, Any]:
        return error_body(self.message, code=self.code, exception_type=self.exception_type)


_CODES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
          405: "MethodNotAllowed", 409: "Conflict", 429: "TooManyRequests",
          500: "InternalServerError", 503: "ServiceUnavailable"}


def error_body(message: str, *, code: str = "Error",
               exception_type: str = "Terrasoft.Common.Exception") -> dict[str, Any]:
    """``{"error": {"code", "message", "innererror": {..., "internalexception": {...}}}}``."""
    return {
        "error": {
            "code": code,
            "message": message,
            "innererror": {
                "message": message,
                "type": "Microsoft.OData.ODataException",
                "stacktrace": "",
                "internalexception": {"message": message, "type": exception_type,
                                      "stacktrace": ""},
            },
        }
    }
