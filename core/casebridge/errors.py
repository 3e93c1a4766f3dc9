"""Errors the core and plugins raise, and how the outbox treats them.

A job that raises :class:`TransientError` (or any unexpected exception) is retried with
backoff; :class:`PermanentError` dead-letters it at once. Messages must never contain
secrets: they end up in logs, in the outbox and on the console.
"""

from __future__ import annotations


class CasebridgeError(Exception):
    """Base of every error casebridge reports to a user as one clear line."""


class ConfigError(CasebridgeError):
    """The configuration is wrong: the message names the file, the key and what was expected."""


class PluginError(CasebridgeError):
    """A plugin could not be loaded, configured or routed to."""


class TransientError(CasebridgeError):
    """Worth trying again later. ``retry_after`` (seconds) is the remote side's own hint."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AmbiguousWriteError(TransientError):
    """A write may or may not have reached the remote side (a timeout after sending).

    The retry must look the record up before writing it again.
    """


class PermanentError(CasebridgeError):
    """Will fail the same way every time; retrying is pointless."""


class WebhookRefused(CasebridgeError):
    """An inbound webhook failed authentication or validation. ``status`` is the HTTP answer."""

    def __init__(self, message: str, *, status: int = 403) -> None:
        super().__init__(message)
        self.status = status
