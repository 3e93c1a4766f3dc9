"""The public API for plugin authors: import from here, and from nothing else of casebridge.

A plugin is a class whose methods are marked with :data:`hookimpl` (the hooks and what each
is for: ``docs/plugins.md``). The core gives each plugin a :class:`PluginContext` when it
configures it: its name and validated settings, its own state, blob storage, its logger,
the metrics registry, the one path that makes an inbound durable and the one that turns
what a CRM reported into work::

    from casebridge.plugin import CheckResult, ConfigSection, PluginContext, hookimpl

    class MyCrm:
        @hookimpl
        def config_section(self) -> ConfigSection:
            return ConfigSection("mycrm", MySettings)

        @hookimpl
        def configure(self, context: PluginContext) -> None:
            self.context = context

        @hookimpl
        async def check(self) -> CheckResult:
            return CheckResult(self.context.name, True)

Everything else in the ``casebridge`` package is the core's own and may change without
notice; the names below keep their meaning across minor versions.
"""

from __future__ import annotations

from .backoff import BackoffPolicy, retry_after_seconds
from .backoff import delay as backoff_delay
from .context import Blobs, PluginContext, PluginState
from .contributions import Address, Command, ConfigSection, Service
from .errors import (
    AmbiguousWriteError,
    CasebridgeError,
    ConfigError,
    PermanentError,
    TransientError,
    WebhookRefused,
)
from .fieldmap import MappedField
from .hookspecs import hookimpl
from .html_depth import flat_text as html_flat_text
from .html_depth import too_deep as html_too_deep
from .http_pool import ShardedTransport
from .json_input import JsonInputError
from .json_input import loads as read_json
from .logs import customer_text
from .model import (
    ActivityRef,
    ActivityRequest,
    AddressKind,
    AssistantTurn,
    Attachment,
    AttachmentRequest,
    Author,
    CaseLink,
    CaseRef,
    CaseRequest,
    CheckResult,
    Contact,
    CrmEvent,
    Delivery,
    DeliveryState,
    Direction,
    FieldValue,
    HandoffDecision,
    HandoffRequest,
    HandoffResult,
    Inbound,
    Message,
    RawInbound,
    Reply,
    Session,
    SessionStatus,
    Summary,
    WebhookRequest,
    derived_id,
    utcnow,
)
from .sanitize import sanitize_html
from .secrets import Secret
from .web import BodyTooLarge, read_body
from .web import serve as serve_http

__all__ = [
    "ActivityRef",
    "ActivityRequest",
    "Address",
    "AddressKind",
    "AmbiguousWriteError",
    "AssistantTurn",
    "Attachment",
    "AttachmentRequest",
    "Author",
    "BackoffPolicy",
    "Blobs",
    "BodyTooLarge",
    "CaseLink",
    "CaseRef",
    "CaseRequest",
    "CasebridgeError",
    "CheckResult",
    "Command",
    "ConfigError",
    "ConfigSection",
    "Contact",
    "CrmEvent",
    "Delivery",
    "DeliveryState",
    "Direction",
    "FieldValue",
    "HandoffDecision",
    "HandoffRequest",
    "HandoffResult",
    "Inbound",
    "JsonInputError",
    "MappedField",
    "Message",
    "PermanentError",
    "PluginContext",
    "PluginState",
    "RawInbound",
    "Reply",
    "Secret",
    "Service",
    "Session",
    "SessionStatus",
    "ShardedTransport",
    "Summary",
    "TransientError",
    "WebhookRefused",
    "WebhookRequest",
    "backoff_delay",
    "customer_text",
    "derived_id",
    "hookimpl",
    "html_flat_text",
    "html_too_deep",
    "read_body",
    "read_json",
    "retry_after_seconds",
    "sanitize_html",
    "serve_http",
    "utcnow",
]
