"""Structured logging on the standard :mod:`logging` module.

Call :func:`configure_logging` once at start-up. Code logs with plain ``logging.getLogger``;
every record logged inside ``with log_context(session_id=..., trace_id=...)`` carries those
ids (contextvars, so they follow anyio tasks). Extra fields (``extra={"crm": "creatio"}``)
become JSON keys or ``key=value`` pairs.

Customer text is personal data: wrap it with :func:`customer_text` wherever it goes into a
log call, as an argument or an extra::

    log.info("inbound from %s", sender, extra={"text": customer_text(message.text)})

The wrapper shows ``[customer text, N chars]`` everywhere (``str``, ``repr``, f-strings,
other handlers) and our formatters reveal it only when the logger's effective level is DEBUG.
Values of secret-like extra keys (password, token, secret, authorization, cookie...) are
masked, nested dicts included.
"""

from __future__ import annotations

import json as jsonlib
import logging
import re
import secrets
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

__all__ = [
    "ContextFilter",
    "CustomerText",
    "JsonFormatter",
    "RedactionFilter",
    "TextFormatter",
    "configure_logging",
    "current_session_id",
    "current_trace_id",
    "customer_text",
    "log_context",
    "new_trace_id",
]

_session_id: ContextVar[str | None] = ContextVar("casebridge_session_id", default=None)
_trace_id: ContextVar[str | None] = ContextVar("casebridge_trace_id", default=None)

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}  # fmt: skip

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "session_id",
    "trace_id",
}
_CORE_KEYS = ("ts", "level", "logger", "msg", "session_id", "trace_id", "exc")

MASK = "***"
# Matched anywhere in a lower-cased key ("clientSecret", "X-Auth-Token", "Set-Cookie"); "token"
# is not followed by "s" so a count such as "ai_tokens" stays readable.
_SECRET_KEY = re.compile(
    r"password|passwd|secret|authorization|cookie|csrf|credential|token(?!s)"
    r"|api[_-]?key|private[_-]?key|access[_-]?key"
)


def new_trace_id() -> str:
    """A fresh 16-hex-digit id to follow one inbound (or reply) through the logs."""
    return secrets.token_hex(8)


def current_session_id() -> str | None:
    return _session_id.get()


def current_trace_id() -> str | None:
    return _trace_id.get()


@contextmanager
def log_context(*, session_id: str | None = None, trace_id: str | None = None) -> Iterator[None]:
    """Tag every record logged inside the block; an id left as None keeps the outer value."""
    tokens = []
    if session_id is not None:
        tokens.append((_session_id, _session_id.set(session_id)))
    if trace_id is not None:
        tokens.append((_trace_id, _trace_id.set(trace_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class CustomerText:
    """Customer-written text on its way into a log line; shows only its length unless revealed.

    Only :class:`JsonFormatter` and :class:`TextFormatter` call :meth:`reveal`, and only when
    debug logging is on for the record's logger.
    """

    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        self._text = str(text)

    def reveal(self) -> str:
        return self._text

    def __str__(self) -> str:
        return f"[customer text, {len(self._text)} chars]"

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def customer_text(text: str) -> CustomerText:
    """Mark ``text`` as the customer's: logged in full at DEBUG only, as its length otherwise."""
    return CustomerText(text)


def _is_secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key.lower()) is not None


def redact(value: Any) -> Any:
    """A copy of ``value`` with the values of secret-like keys masked, at any depth."""
    if isinstance(value, Mapping):
        return {
            k: MASK if isinstance(k, str) and _is_secret_key(k) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class ContextFilter(logging.Filter):
    """Copies the current ``session_id`` and ``trace_id`` onto each record (unless set by extra)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "session_id", None) is None:
            record.session_id = _session_id.get()
        if getattr(record, "trace_id", None) is None:
            record.trace_id = _trace_id.get()
        return True


class RedactionFilter(logging.Filter):
    """Masks extras whose key looks secret, and secret-like keys inside dict extras.

    Dict extras are replaced by redacted copies, so the caller's objects are never changed.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for key in _extra_keys(record):
            value = record.__dict__[key]
            if _is_secret_key(key):
                record.__dict__[key] = MASK
            elif isinstance(value, Mapping | list | tuple):
                record.__dict__[key] = redact(value)
        return True


def _extra_keys(record: logging.LogRecord) -> list[str]:
    return [key for key in record.__dict__ if key not in _RECORD_ATTRS]


def _reveals(record: logging.LogRecord) -> bool:
    return logging.getLogger(record.name).getEffectiveLevel() <= logging.DEBUG


def _plain(value: Any, reveal: bool) -> Any:
    if isinstance(value, CustomerText):
        return value.reveal() if reveal else str(value)
    if isinstance(value, Mapping):
        return {k: _plain(v, reveal) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, reveal) for v in value]
    return value


def _message(record: logging.LogRecord, reveal: bool) -> str:
    msg = str(_plain(record.msg, reveal))
    args = record.args
    if not args:
        return msg
    if isinstance(args, Mapping):
        return msg % {k: _plain(v, reveal) for k, v in args.items()}
    return msg % tuple(_plain(v, reveal) for v in args)


def _timestamp(record: logging.LogRecord) -> str:
    when = datetime.fromtimestamp(record.created, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _fields(record: logging.LogRecord, formatter: logging.Formatter) -> dict[str, Any]:
    reveal = _reveals(record)
    fields: dict[str, Any] = {
        "ts": _timestamp(record),
        "level": record.levelname,
        "logger": record.name,
        "msg": _message(record, reveal),
        "session_id": getattr(record, "session_id", None),
        "trace_id": getattr(record, "trace_id", None),
    }
    if record.exc_info:
        fields["exc"] = formatter.formatException(record.exc_info)
    elif record.exc_text:
        fields["exc"] = record.exc_text
    for key in _extra_keys(record):
        name = f"extra_{key}" if key in _CORE_KEYS else key
        fields[name] = _plain(record.__dict__[key], reveal)
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, session_id, trace_id, [exc], extras.

    An extra that collides with a core key is written as ``extra_<key>``; values JSON cannot
    hold are written with ``str`` (a :class:`casebridge.secrets.Secret` shows only its origin).
    """

    def format(self, record: logging.LogRecord) -> str:
        line = jsonlib.dumps(_fields(record, self), default=str, ensure_ascii=False)
        # JSON leaves these raw, but line readers (str.splitlines, some shippers) break on them.
        return line.translate(_JSON_LINE_BREAKS)


_JSON_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}
# Everything str.splitlines() breaks on, escaped so one record stays one line.
_TEXT_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\\\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


_NEEDS_QUOTES = re.compile(r'[\s"=\\]|^$')


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else jsonlib.dumps(value, default=str)
    if _NEEDS_QUOTES.search(text) or not text.isprintable():
        return jsonlib.dumps(text, ensure_ascii=False).translate(_JSON_LINE_BREAKS)
    return text


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger [session trace] msg key=value ...`` on one line for people to read.

    Line breaks in the message are escaped, so customer text cannot forge a log line; an
    exception's traceback follows on its own lines.
    """

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record, self)
        ids = " ".join(
            f"{short}={fields[key]}"
            for short, key in (("session", "session_id"), ("trace", "trace_id"))
            if fields[key]
        )
        msg = fields["msg"].translate(_TEXT_LINE_BREAKS)
        parts = [fields["ts"], f"{fields['level']:<7}", fields["logger"]]
        if ids:
            parts.append(f"[{ids}]")
        parts.append(msg)
        parts.extend(
            f"{key}={_text_value(value)}" for key, value in fields.items() if key not in _CORE_KEYS
        )
        line = " ".join(parts)
        if "exc" in fields:
            line += "\n" + fields["exc"]
        return line


_HANDLER_MARK = "_casebridge_handler"


def configure_logging(level: str, json: bool, stream: IO[str] | None = None) -> logging.Handler:
    """Send all logging to ``stream`` (default stderr) at ``level``, as JSON lines or text.

    ``level`` is debug, info, warning, error or critical (any case). Calling it again replaces
    the handler an earlier call installed; other handlers on the root logger are left alone.
    Returns the installed handler.
    """
    try:
        numeric = _LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r}: expected one of {', '.join(_LEVELS)}"
        ) from None
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactionFilter())
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(numeric)
    return handler
