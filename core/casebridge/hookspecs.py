"""The plugin contract: every hook casebridge calls, with its signature and meaning.

Three kinds of hook, called in three ways (see ``casebridge.plugins.Hooks``):

* **Routed I/O hooks** (``ingest``, ``deliver_reply``, ``sync_contact``, ``find_open_case``,
  ``get_case``, ``create_case``, ``append_activity``, ``append_activities``, ``handoff``,
  ``attach_file``, ``resolve_case``, ``read_webhook``, ``check``) are
  ``async def`` in the implementation. The core calls only the plugin the TOML names for
  the channel or CRM at hand and awaits its one result.
* **Transform hooks** (``handoff_policy``, ``assistant_turn``, ``summarize``,
  ``map_fields``) are called on every enabled plugin; each may be ``def`` or ``async def``,
  and every awaitable result is awaited. Defaults live in ``casebridge.defaults`` as
  ``trylast`` implementations so any plugin can take precedence.
* **Set-up hooks** (``config_section``, ``configure``, ``services``, ``http_routes``,
  ``cli_commands``) are plain ``def``.

No hook is ``firstresult``: pluggy would pick the first un-awaited coroutine. Implementations
take no default arguments (pluggy never passes them) and may accept any subset of the
arguments, by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from .bridge import Bridge
    from .contributions import Command, ConfigSection, Service
    from .model import (
        ActivityRef,
        ActivityRequest,
        AssistantTurn,
        AttachmentRequest,
        CaseRef,
        CaseRequest,
        CheckResult,
        Contact,
        CrmEvent,
        Delivery,
        FieldValue,
        HandoffDecision,
        HandoffRequest,
        HandoffResult,
        Inbound,
        Message,
        RawInbound,
        Session,
        Summary,
        WebhookRequest,
    )

PROJECT = "casebridge"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = ["PROJECT", "hookimpl", "hookspec"]


# -- set-up ------------------------------------------------------------------------------


@hookspec
def config_section() -> ConfigSection | None:
    """Declare the plugin's section of the TOML, ``[plugins.<name>]``.

    Called for every enabled plugin before start-up. Returns a
    :class:`~casebridge.contributions.ConfigSection`, or None for a plugin with no settings.
    The core validates the section against it and passes the result to ``configure``.
    """


@hookspec
def configure(bridge: Bridge, settings: Any) -> None:
    """Receive the validated settings (an instance of the declared schema, or None).

    Routed: called once on each enabled plugin, before any other hook that does I/O. Keep
    what you need on the plugin instance; open no connections here (do that in a service or
    lazily).
    """


@hookspec
def services(bridge: Bridge) -> list[Service]:
    """Long-running tasks to start with the runner (an SMTP server, a poller).

    Called once by ``casebridge run``. Returns a list of
    :class:`~casebridge.contributions.Service`; every enabled plugin's lists are started in one
    task group and cancelled together at shutdown.
    """


@hookspec
def http_routes(bridge: Bridge) -> list[BaseRoute]:
    """Starlette routes to mount on the bridge's HTTP server (an SMS webhook, a status page).

    Called once when the web app is built. Returns a list of routes; paths should start
    with ``/<plugin name>/`` or ``/webhooks/<plugin name>/`` to stay out of each other's way.
    """


@hookspec
def cli_commands() -> list[Command]:
    """CLI subcommands this plugin adds (``casebridge email trim``...).

    Called when the CLI is built, for every installed plugin that loads. Returns a list of
    :class:`~casebridge.contributions.Command`.
    """


@hookspec
def check(bridge: Bridge) -> CheckResult:
    """Routed, async: tell whether the plugin can work with its settings.

    Called by ``casebridge check`` on each enabled plugin. Returns a
    :class:`~casebridge.model.CheckResult`: ``ok`` with "Active", or the precise reason.
    Must not raise for an expected failure (an unreachable URL, a refused login).
    """


# -- channels ----------------------------------------------------------------------------


@hookspec
def ingest(raw: RawInbound) -> Inbound:
    """Routed, async: parse one raw inbound of this plugin's channel.

    ``raw`` is what the channel's transport received (email bytes, a webhook form). Returns an
    :class:`~casebridge.model.Inbound`: a normalized message, or the reason to drop it (an
    auto-reply, an opt-out keyword). Raise ``PermanentError`` for input that cannot be parsed.
    """


@hookspec
def deliver_reply(session: Session, message: Message, transcript: Sequence[Message]) -> Delivery:
    """Routed, async: send ``message`` (an agent reply or an assistant answer) to the customer.

    ``transcript`` is the session's messages so far, oldest first, for threading. Returns a
    :class:`~casebridge.model.Delivery`; a refusal (opted-out number) or a permanent failure
    is a Delivery, a transient failure raises ``TransientError``. Must send at most once per
    ``message.id`` even when called again after a crash.
    """


# -- CRMs --------------------------------------------------------------------------------


@hookspec
def sync_contact(contact: Contact) -> Contact:
    """Routed, async: find the contact in the CRM by email or phone, or create it.

    Returns the contact with ``crm_id`` set.
    """


@hookspec
def find_open_case(contact: Contact) -> CaseRef | None:
    """Routed, async: the contact's newest case whose status is not final, or None.

    ``contact.crm_id`` is set. Used for case-append: a returning contact is appended to it.
    """


@hookspec
def get_case(case_id: str) -> CaseRef | None:
    """Routed, async: the case with this CRM id (its status and whether it is open), or None."""


@hookspec
def create_case(request: CaseRequest) -> CaseRef:
    """Routed, async: create the case described by ``request``, at most once per ``request.key``.

    When ``request.maybe_written`` is True, look the case up by its key first and return it
    if it exists. Returns the created (or found) case.
    """


@hookspec
def append_activity(request: ActivityRequest) -> ActivityRef:
    """Routed, async: add one message to a case as an activity, at most once per ``request.key``.

    Same idempotency rule as ``create_case``. Returns the activity.
    """


@hookspec
def resolve_case(case_id: str) -> None:
    """Routed, async, optional: casebridge closed the conversation of this case.

    Called by the ``close`` job (``casebridge sessions close``, ``POST
    /api/sessions/{id}/close``). A CRM may set its resolved status here, if its settings ask
    for it; it must be harmless to call twice and on a case that is already final.
    """


@hookspec
def read_webhook(request: WebhookRequest) -> list[CrmEvent]:
    """Routed, async: authenticate and read a call to ``POST /webhooks/<crm>/<token>``.

    Raise ``WebhookRefused`` when the call is not authentic. Returns the events it carries
    (an agent reply, read back from the CRM, or a closed case); activities the bridge wrote
    itself are not events.
    """


@hookspec
def append_activities(requests: Sequence[ActivityRequest]) -> list[ActivityRef]:
    """Routed, async, optional: add several messages of one case as activities, in order, in
    as few round trips as the CRM allows (Creatio: ``$batch``).

    Same rule per request as ``append_activity``: at most once per ``key``, and look before
    writing when ``maybe_written``. Returns one activity per request, in request order. A CRM
    that does not implement it gets one ``append_activity`` call per message.
    """


@hookspec
def handoff(request: HandoffRequest) -> HandoffResult:
    """Routed, async, optional: a whole handoff in as few round trips as the CRM allows
    (Creatio: one ``$batch`` of reads, one atomic ``$batch`` of writes).

    Find the contact (``sync_contact``) and the case: ``request.case_id`` when it still
    exists, else the contact's open case (``find_open_case``), else a new one from
    ``await request.describe(contact)`` (``create_case``, at most once per ``request.key``).
    Then add ``await request.activities(case)``, at most once per key each
    (``append_activities``). When ``request.maybe_written`` or a request's own
    ``maybe_written`` is True, look before writing. Returns a
    :class:`~casebridge.model.HandoffResult` with one activity per request, in order. A CRM
    that does not implement it gets the per-step hooks named above, in that order.
    """


@hookspec
def attach_file(request: AttachmentRequest) -> str | None:
    """Routed, async, optional: upload one of a message's attachments to the case.

    Called after the message's activity is written, once per stored attachment, at most once
    per ``request.key`` (look before writing when ``maybe_written``). Returns the CRM's file
    id, or None when the plugin is set not to upload (the activity text references the file).
    A CRM that does not implement it gets no uploads.
    """


# -- transforms --------------------------------------------------------------------------


@hookspec
def handoff_policy(session: Session, transcript: Sequence[Message]) -> HandoffDecision | None:
    """Decide, after a customer message, whether the session goes to a human now.

    Called on every enabled plugin; the first non-None decision in call order wins (the
    default keyword and turn-count rule runs last). Returns a decision or None.
    """


@hookspec
def assistant_turn(session: Session, transcript: Sequence[Message]) -> AssistantTurn | None:
    """Let the assistant answer the customer's latest message, or hand off.

    Called when no ``handoff_policy`` decided to hand off; the first non-None turn wins.
    Returns None when this plugin has no assistant.
    """


@hookspec
def summarize(
    session: Session, transcript: Sequence[Message], decision: HandoffDecision
) -> Summary | None:
    """Write the case subject and description for a handoff.

    Called on every enabled plugin; the first non-None summary in call order wins (the
    default extractive summary runs last).
    """


@hookspec
def map_fields(
    session: Session, transcript: Sequence[Message], summary: Summary
) -> Mapping[str, FieldValue] | None:
    """Fill CRM columns for a new case: ``{"PriorityId": FieldValue("High", "lookup")}``.

    Called on every enabled plugin; the mappings are merged, and a column set by two plugins
    is an error unless ``[fields] prefer`` in the TOML names the plugin that wins.
    """
