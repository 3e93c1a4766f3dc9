"""The plugin contract: every hook casebridge calls, with its signature and meaning.

Three kinds of hook, called in three ways (see ``casebridge.plugins.Hooks``):

* **Routed I/O hooks** (``ingest``, ``deliver_reply``, ``reconcile_delivery``,
  ``sync_contact``, ``find_open_case``, ``get_case``, ``create_case``, ``append_activity``,
  ``append_activities``, ``handoff``, ``attach_file``, ``resolve_case``, ``read_webhook``,
  ``check``) are
  ``async def`` in the implementation. The core calls only the plugin the TOML names for
  the channel or CRM at hand and awaits its one result.
* **Transform hooks** (``handoff_policy``, ``assistant_turn``, ``summarize``,
  ``map_fields``) are called on every enabled plugin; each may be ``def`` or ``async def``,
  and every awaitable result is awaited. Defaults live in ``casebridge.defaults`` as
  ``trylast`` implementations so any plugin can take precedence.
* **Set-up hooks** (``config_section``, ``configure``, ``services``, ``http_routes``,
  ``cli_commands``, ``addresses``) are plain ``def``.

No hook is ``firstresult``: pluggy would pick the first un-awaited coroutine. Implementations
take no default arguments (pluggy never passes them) and may accept any subset of the
arguments, by name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from .context import PluginContext
    from .contributions import Address, Command, ConfigSection, Service
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

    Called for every enabled plugin before start-up. The core builds the section into the
    declared dataclass (unknown keys, wrong types and missing keys fail start-up with the
    file and key) and passes the result to ``configure``.

    :returns: A :class:`~casebridge.contributions.ConfigSection` naming the settings
        dataclass, or None for a plugin with no settings.
    """


@hookspec
def configure(context: PluginContext) -> None:
    """Receive the plugin's context, once, before anything else.

    Routed: called once on each enabled plugin, before any hook that does I/O. Keep the
    context: every other hook reaches the runner through it. Open no connections here (do
    that in a service or lazily).

    :param context: What the plugin may ask of the runner, a
        :class:`~casebridge.plugin.PluginContext`: its name as the TOML gives it, its
        validated settings (an instance of the dataclass ``config_section`` declared, or
        None), its state, blobs, logger and metrics, and the paths into the core.
    :returns: Nothing.
    """


@hookspec
def services() -> list[Service]:
    """Long-running tasks to start with the runner (an SMTP server, a poller).

    Called once by ``casebridge run``; every enabled plugin's services start in one task
    group and are cancelled together at shutdown. A service's ``run`` calls
    ``task_status.started()`` once it is ready (a port bound). A service marked
    ``singleton=True`` (a poller) runs on one runner of those sharing a store at a time.

    :returns: A list of :class:`~casebridge.contributions.Service`.
    """


@hookspec
def http_routes() -> list[BaseRoute]:
    """Starlette routes to mount on the bridge's HTTP server (an SMS webhook, a status page).

    Called once when the web app is built. Paths should start with ``/<plugin name>/`` or
    ``/webhooks/<plugin name>/`` to stay out of each other's way.

    :returns: A list of Starlette routes.
    """


@hookspec
def addresses() -> list[Address]:
    """The addresses a person uses with this plugin: its pages, its servers, demo logins.

    Called once every service has started (so ports the OS picked are known), to print one
    block at start-up, and by pages that link to them. Never put a real secret in a note.

    :returns: A list of :class:`~casebridge.contributions.Address` (label, where, note), in
        the order to show them.
    """


@hookspec
def cli_commands() -> list[Command]:
    """CLI subcommands this plugin adds (``casebridge email trim``...).

    Called when the CLI is built, for every installed plugin that loads; ``("sandbox",
    "sms")`` becomes ``casebridge sandbox sms``.

    :returns: A list of :class:`~casebridge.contributions.Command`.
    """


@hookspec
def check() -> CheckResult:
    """Routed, async: tell whether the plugin can work with its settings.

    Called by ``casebridge check`` on each enabled plugin. Must not raise for an expected
    failure (an unreachable URL, a refused login): say it in the result.

    :returns: A :class:`~casebridge.model.CheckResult`: ``ok`` with "Active", or the precise
        reason it cannot work.
    """


# -- channels ----------------------------------------------------------------------------


@hookspec
def ingest(raw: RawInbound) -> Inbound:
    """Routed, async: parse one raw inbound of this plugin's channel.

    The core calls it from ``context.receive(raw)``, which the channel's transport calls and
    awaits before it acknowledges (SMTP ``250``, webhook ``200``): the result is stored by
    then. A transport that takes bursts calls ``context.receive_later(raw)`` instead: the raw
    inbound is stored before the acknowledgement and ``ingest`` runs in the outbox (retried
    on failure). Raise ``PermanentError`` for input that cannot be parsed: ``receive``
    refuses the transport with it, and either path records the inbound as dropped.

    :param raw: What the transport received, in the channel's own terms (``payload`` and
        ``fields``: email bytes and their envelope, or a webhook form), with the ``sender``
        and ``transport_id`` the channel set for the record of a dropped inbound.
    :returns: An :class:`~casebridge.model.Inbound`: a normalized message with
        ``sender_kind`` saying whether its sender is an e-mail address or a phone number
        (the core files the contact's address by it), or the reason to drop it (an
        auto-reply, an opt-out keyword).
    """


@hookspec
def deliver_reply(session: Session, message: Message, transcript: Sequence[Message]) -> Delivery:
    """Routed, async: send an agent reply or an assistant answer to the customer.

    Send it once per call. The core makes delivery at most once per ``message.id``: it
    records the intent before this call and the outcome after it, and when it finds an
    intent without an outcome it calls ``reconcile_delivery`` instead of this hook. Raise
    ``AmbiguousWriteError`` when the message may have gone out (a timeout after sending).

    :param session: The session the message belongs to (its channel, contact, addresses).
    :param message: The outbound message: its text, HTML and recipients.
    :param transcript: The session's messages so far, oldest first, for threading.
    :returns: A :class:`~casebridge.model.Delivery`: SENT, or a final REFUSED (an opted-out
        number) or FAILED with the reason. A transient failure raises ``TransientError``
        instead, to be retried.
    """


@hookspec
def reconcile_delivery(session: Session, message: Message, since: datetime) -> Delivery | None:
    """Routed, async, optional: find out whether a reply whose send was interrupted went out.

    The core calls it instead of ``deliver_reply`` when an earlier attempt to deliver
    ``message`` began but its outcome was never recorded: the runner died mid-send, or
    ``deliver_reply`` raised ``AmbiguousWriteError`` or an unexpected error. A channel that
    can ask its transport (an SMS provider's message list) implements it. A channel that
    cannot (an SMTP relay) leaves it out, and the core marks such a reply FAILED as possibly
    sent: it is never sent twice (``casebridge.delivery_log``).

    :param session: The session the message belongs to (its channel, contact, addresses).
    :param message: The outbound message, as it was given to ``deliver_reply``.
    :param since: When the first attempt to deliver it began (timezone-aware): the message
        is not older than that, give or take the transport's clock skew.
    :returns: A :class:`~casebridge.model.Delivery` when the channel finds what became of the
        message (SENT with its id); None when it is sure the message did not go out, so the
        core calls ``deliver_reply`` again. Raise ``TransientError`` when the transport cannot
        be asked now.
    """


# -- CRMs --------------------------------------------------------------------------------


@hookspec
def sync_contact(contact: Contact) -> Contact:
    """Routed, async: find the contact in the CRM by email or phone, or create it.

    :param contact: The bridge's contact, with its emails and phones.
    :returns: The contact with ``crm_id`` set.
    """


@hookspec
def find_open_case(contact: Contact) -> CaseRef | None:
    """Routed, async: the contact's newest case whose status is not final.

    Used for case-append: a returning contact is appended to this case.

    :param contact: The contact, with ``crm_id`` set by ``sync_contact``.
    :returns: The case, or None when the contact has no open case.
    """


@hookspec
def get_case(case_id: str) -> CaseRef | None:
    """Routed, async: the case with this CRM id, its status and whether it is open.

    :param case_id: The CRM's id of the case.
    :returns: The case, or None when the CRM has none with that id.
    """


@hookspec
def create_case(request: CaseRequest) -> CaseRef:
    """Routed, async: create the case a handoff describes, at most once per key.

    When ``request.maybe_written`` is True (an earlier attempt may have reached the CRM),
    look the case up by ``request.key`` first and return it if it exists.

    :param request: The summary, mapped fields, contact, session and the stable ``key``.
    :returns: The created (or found) case.
    """


@hookspec
def append_activity(request: ActivityRequest) -> ActivityRef:
    """Routed, async: add one message to a case as an activity, at most once per key.

    Same idempotency rule as ``create_case``. The bodies come rendered from the templates;
    the ``first`` activity carries the "View session" link.

    :param request: The message, its case, rendered title and bodies, and the stable ``key``.
    :returns: The activity.
    """


@hookspec
def resolve_case(case_id: str) -> None:
    """Routed, async, optional: casebridge closed the conversation of this case.

    Called by the ``close`` job (``casebridge sessions close``, ``POST
    /api/sessions/{id}/close``). A CRM may set its resolved status here, if its settings ask
    for it; it must be harmless to call twice and on a case that is already final.

    :param case_id: The CRM's id of the case.
    :returns: Nothing.
    """


@hookspec
def read_webhook(request: WebhookRequest) -> list[CrmEvent]:
    """Routed, async: authenticate and read a call to ``POST /webhooks/<crm>/<token>``.

    Raise ``WebhookRefused`` when the call is not authentic or not understood. Activities
    the bridge wrote itself are not events.

    :param request: The call: the path token, headers, body and remote address.
    :returns: The events it carries: an agent reply (read back from the CRM) or a closed
        case.
    """


@hookspec
def append_activities(requests: Sequence[ActivityRequest]) -> list[ActivityRef]:
    """Routed, async, optional: add several messages of one case as activities, in order.

    In as few round trips as the CRM allows (Creatio: ``$batch``). Same rule per request as
    ``append_activity``: at most once per ``key``, and look before writing when
    ``maybe_written``. A CRM that does not implement it gets one ``append_activity`` call per
    message.

    :param requests: The activities of one case, in the order they are to appear.
    :returns: One activity per request, in request order.
    """


@hookspec
def handoff(request: HandoffRequest) -> HandoffResult:
    """Routed, async, optional: a whole handoff in as few round trips as the CRM allows.

    Creatio: one ``$batch`` of reads, one atomic ``$batch`` of writes. Find the contact
    (``sync_contact``) and the case: ``request.case_id`` when it still exists, else the
    contact's open case (``find_open_case``), else a new one from ``await
    request.describe(contact)`` (``create_case``, at most once per ``request.key``). Then add
    ``await request.activities(case)``, at most once per key each (``append_activities``).
    When ``request.maybe_written`` or a request's own ``maybe_written`` is True, look before
    writing. A CRM that does not implement it gets the per-step hooks named above, in that
    order.

    :param request: The case key, session and contact, the case id an earlier attempt
        recorded (or ""), ``maybe_written``, and the two callbacks that build the case
        request and the activities the case lacks.
    :returns: A :class:`~casebridge.model.HandoffResult`: the contact with its CRM id, the
        case, whether it was created, and one activity per request, in order.
    """


@hookspec
def attach_file(request: AttachmentRequest) -> str | None:
    """Routed, async, optional: upload one of a message's attachments to the case.

    Called after the message's activity is written, once per stored attachment, at most once
    per ``request.key`` (look before writing when ``maybe_written``). A CRM that does not
    implement it gets no uploads.

    :param request: The attachment's bytes and metadata, its message, case and stable key.
    :returns: The CRM's file id, or None when the plugin is set not to upload (the activity
        text references the file).
    """


# -- transforms --------------------------------------------------------------------------


@hookspec
def handoff_policy(session: Session, transcript: Sequence[Message]) -> HandoffDecision | None:
    """Decide, after a customer message, whether the session goes to a human now.

    Called on every enabled plugin in call order (the default keyword and turn-count rule
    runs last); the first non-None decision wins. An implementation that raises is logged,
    counted and skipped.

    :param session: The session, still with the assistant.
    :param transcript: The session's messages, oldest first.
    :returns: A :class:`~casebridge.model.HandoffDecision` with the reason, or None.
    """


@hookspec
def assistant_turn(session: Session, transcript: Sequence[Message]) -> AssistantTurn | None:
    """Let the assistant answer the customer's latest message, or hand off.

    Called when no ``handoff_policy`` decided to hand off; the first non-None turn wins. An
    assistant that raises is logged and counted; when none answered, the session is handed
    off so the customer is not left waiting.

    :param session: The session, still with the assistant.
    :param transcript: The session's messages, oldest first.
    :returns: An :class:`~casebridge.model.AssistantTurn` (an answer or a handoff), or None
        when this plugin has no assistant.
    """


@hookspec
def summarize(
    session: Session, transcript: Sequence[Message], decision: HandoffDecision
) -> Summary | None:
    """Write the case subject and description for a handoff.

    Called on every enabled plugin in call order (the default extractive summary runs
    last); the first non-None summary wins. An implementation that raises is skipped.

    :param session: The session being handed off.
    :param transcript: The session's messages, oldest first.
    :param decision: Why it is handed off, and who decided.
    :returns: A :class:`~casebridge.model.Summary`, or None to leave it to another plugin.
    """


@hookspec
def map_fields(
    session: Session, transcript: Sequence[Message], summary: Summary
) -> Mapping[str, FieldValue] | None:
    """Fill CRM columns for a new case: ``{"PriorityId": FieldValue("High", "lookup")}``.

    Called on every enabled plugin; the mappings are merged in plugin-name order, and a
    column set by two plugins is an error unless ``[fields] prefer`` names the winner. An
    empty value with a note leaves the column empty and tells the rep why, on the case.

    :param session: The session being handed off.
    :param transcript: The session's messages, oldest first.
    :param summary: The summary the case will carry.
    :returns: Columns and their values, or None.
    """
