"""Loading plugins and calling hooks: one PluginManager per runner, one typed facade.

Entry points in the group ``casebridge`` are loaded one at a time; the built-in plugins
come through the same path as a third-party package. An entry point may name a module, an
object, or a class (instantiated with no arguments, so each runner gets its own instance).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import EntryPoint, entry_points
from typing import Any, TypeVar

import pluggy
from pluggy import HookImpl

from . import hookspecs
from .errors import PluginError
from .metrics import BridgeMetrics, new_registry
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

log = logging.getLogger(__name__)
T = TypeVar("T")
GROUP = "casebridge"


@dataclass(frozen=True, slots=True)
class PluginInfo:
    name: str
    version: str
    source: str
    hooks: tuple[str, ...]


@dataclass(slots=True)
class LoadReport:
    """What :func:`load_entry_points` did: the entry point behind each plugin it registered,
    and the plugins that failed to load."""

    sources: dict[str, EntryPoint]
    failures: list[LoadFailure]


@dataclass(frozen=True, slots=True)
class LoadFailure:
    name: str
    source: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.name!r} ({self.source}) failed to load: {self.error}"


def new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load_entry_points(
    pm: pluggy.PluginManager,
    *,
    enabled: Iterable[str] | None,
    strict: bool,
    group: str = GROUP,
    quiet: bool = False,
) -> LoadReport:
    """Register the plugins of ``group`` that are ``enabled`` (all when None).

    Each entry point is loaded on its own: one that fails is reported and skipped, or, under
    ``strict``, raises PluginError. A plugin that is not enabled is blocked, so nothing can
    register it later by accident. ``quiet`` logs failures at debug level only (for callers
    that report them their own way). Returns what it registered and what failed.
    """
    wanted = None if enabled is None else set(enabled)
    report = LoadReport({}, [])
    failures = report.failures
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
            continue
        if wanted is not None and ep.name not in wanted:
            pm.set_blocked(ep.name)
            continue
        try:
            plugin = _instantiate(ep.load())
            pm.register(plugin, name=ep.name)
        except Exception as exc:
            failure = LoadFailure(ep.name, ep.value, f"{type(exc).__name__}: {exc}")
            if strict:
                raise PluginError(str(failure)) from exc
            log.log(logging.DEBUG if quiet else logging.ERROR,
                    "%s; skipped (set strict = true to stop instead)", failure)
            failures.append(failure)
            continue
        report.sources[ep.name] = ep
    validate(pm)
    if wanted is not None:
        missing = sorted(wanted - {name for name, _ in pm.list_name_plugin()})
        missing = [m for m in missing if m not in {f.name for f in failures}]
        if missing:
            raise PluginError(
                f"the configuration enables {', '.join(map(repr, missing))}, but no installed "
                f"plugin has that name (installed: {', '.join(sorted(installed_names()))})"
            )
    return report


def validate(pm: pluggy.PluginManager) -> None:
    """Fail loudly on a misspelled hook or an implementation with default arguments
    (pluggy never passes those, so the default would silently always apply)."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {pm.get_name(exc.plugin)!r}: {exc}") from None
    for name in dir(pm.hook):
        if name.startswith("_"):
            continue
        for impl in getattr(pm.hook, name).get_hookimpls():
            if impl.kwargnames:
                raise PluginError(
                    f"plugin {impl.plugin_name!r}: hook {name} takes default arguments "
                    f"({', '.join(impl.kwargnames)}); pluggy never passes them"
                )


def _instantiate(obj: object) -> object:
    return obj() if inspect.isclass(obj) else obj


def installed_names(group: str = GROUP) -> list[str]:
    return sorted(ep.name for ep in entry_points(group=group))


def describe(pm: pluggy.PluginManager, sources: Mapping[str, EntryPoint]) -> list[PluginInfo]:
    """Name, version, hooks and source of every registered plugin."""
    infos = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: item[0]):
        if plugin is None:
            continue
        ep = sources.get(name)
        dist = ep.dist if ep is not None else None
        version = dist.version if dist is not None else ""
        source = ep.value if ep is not None else type(plugin).__module__
        hooks = tuple(sorted(h.name for h in pm.get_hookcallers(plugin) or ()))
        infos.append(PluginInfo(name, version, source, hooks))
    return infos


async def _resolve(value: T | Awaitable[T]) -> T:
    if inspect.isawaitable(value):
        return await value
    return value


class Hooks:
    """The only way the core calls hooks: one typed method per hook.

    Routed hooks go to the one plugin named for the channel or CRM and await its result;
    transform hooks go to every registered plugin and await whatever they return.
    """

    def __init__(
        self,
        pm: pluggy.PluginManager,
        *,
        prefer: Mapping[str, str] | None = None,
        metrics: BridgeMetrics | None = None,
    ):
        self.pm = pm
        self.prefer = dict(prefer or {})
        self._hook_errors = (metrics or BridgeMetrics(new_registry())).hook_errors

    # -- routing --------------------------------------------------------------------------

    def implements(self, plugin: str, hook: str) -> bool:
        return any(i.plugin_name == plugin for i in getattr(self.pm.hook, hook).get_hookimpls())

    def _routed(self, hook: str, plugin: str, **kwargs: Any) -> Any:
        impls = [i for i in getattr(self.pm.hook, hook).get_hookimpls() if i.plugin_name == plugin]
        if not impls:
            if self.pm.get_plugin(plugin) is None:
                raise PluginError(f"no plugin named {plugin!r} is enabled (needed for {hook})")
            raise PluginError(f"plugin {plugin!r} does not implement the {hook} hook")
        others = [p for name, p in self.pm.list_name_plugin() if name != plugin and p is not None]
        results = self.pm.subset_hook_caller(hook, remove_plugins=others)(**kwargs)
        # pluggy leaves None results out of the list.
        if len(results) > 1:
            raise PluginError(f"plugin {plugin!r} gave {len(results)} results for {hook}")
        return results[0] if results else None

    async def _routed_async(self, hook: str, plugin: str, **kwargs: Any) -> Any:
        return await _resolve(self._routed(hook, plugin, **kwargs))

    def _call_order(self, hook: str) -> list[HookImpl]:
        # pluggy calls the last of get_hookimpls() first: later-registered and tryfirst
        # plugins before the trylast defaults.
        return list(reversed(getattr(self.pm.hook, hook).get_hookimpls()))

    async def _isolated(
        self, hook: str, impl: HookImpl, kwargs: Mapping[str, Any],
        *, failed: list[str] | None = None,
    ) -> Any:
        """One transform implementation's answer, or None when it raised: a broken plugin
        is named in the log and counted, and the others (and the defaults) still answer."""
        try:
            return await _resolve(impl.function(**{a: kwargs[a] for a in impl.argnames}))
        except Exception as exc:
            log.error("plugin %r failed in %s (its answer is skipped): %s: %s",
                      impl.plugin_name, hook, type(exc).__name__, exc,
                      exc_info=log.isEnabledFor(logging.DEBUG))
            self._hook_errors.labels(hook=hook, plugin=impl.plugin_name).inc()
            if failed is not None:
                failed.append(f"{impl.plugin_name}: {type(exc).__name__}")
            return None

    async def _first(self, hook: str, **kwargs: Any) -> Any:
        # Implementations are called one at a time, so one that answers first leaves the
        # rest uncalled: no coroutine is created that nobody awaits, and a default does no
        # needless work.
        for impl in self._call_order(hook):
            value = await self._isolated(hook, impl, kwargs)
            if value is not None:
                return value
        return None

    # -- set-up ---------------------------------------------------------------------------

    def config_sections(self) -> dict[str, Any]:
        """Each registered plugin's declared section, by plugin name."""
        sections = {}
        for impl in self.pm.hook.config_section.get_hookimpls():
            section = impl.function()
            if section is not None:
                sections[impl.plugin_name] = section
        return sections

    def configure(self, plugin: str, context: Any) -> None:
        if self.implements(plugin, "configure"):
            self._routed("configure", plugin, context=context)

    def services(self) -> list[Any]:
        return [s for group in self.pm.hook.services() for s in group]

    def http_routes(self) -> list[Any]:
        return [r for group in self.pm.hook.http_routes() for r in group]

    def addresses(self) -> list[Any]:
        return [a for group in self.pm.hook.addresses() for a in group]

    def cli_commands(self) -> list[Any]:
        return [c for group in self.pm.hook.cli_commands() for c in group]

    async def check(self, plugin: str) -> CheckResult:
        if not self.implements(plugin, "check"):
            return CheckResult(plugin, True, "Active (no check offered)")
        return await self._routed_async("check", plugin)

    # -- channels -------------------------------------------------------------------------

    async def ingest(self, channel: str, raw: RawInbound) -> Inbound:
        return await self._routed_async("ingest", channel, raw=raw)

    async def deliver_reply(
        self, channel: str, session: Session, message: Message, transcript: Sequence[Message]
    ) -> Delivery:
        return await self._routed_async(
            "deliver_reply", channel, session=session, message=message, transcript=transcript
        )

    async def reconcile_delivery(
        self, channel: str, session: Session, message: Message, since: datetime
    ) -> Delivery | None:
        return await self._routed_async(
            "reconcile_delivery", channel, session=session, message=message, since=since
        )

    # -- CRMs -----------------------------------------------------------------------------

    async def sync_contact(self, crm: str, contact: Contact) -> Contact:
        return await self._routed_async("sync_contact", crm, contact=contact)

    async def find_open_case(self, crm: str, contact: Contact) -> CaseRef | None:
        return await self._routed_async("find_open_case", crm, contact=contact)

    async def get_case(self, crm: str, case_id: str) -> CaseRef | None:
        return await self._routed_async("get_case", crm, case_id=case_id)

    async def create_case(self, crm: str, request: CaseRequest) -> CaseRef:
        return await self._routed_async("create_case", crm, request=request)

    async def append_activity(self, crm: str, request: ActivityRequest) -> ActivityRef:
        return await self._routed_async("append_activity", crm, request=request)

    async def append_activities(
        self, crm: str, requests: Sequence[ActivityRequest]
    ) -> list[ActivityRef]:
        refs = await self._routed_async("append_activities", crm, requests=list(requests))
        if len(refs) != len(requests):
            raise PluginError(f"plugin {crm!r} returned {len(refs)} activities for "
                              f"{len(requests)} requests")
        return refs

    async def handoff(self, crm: str, request: HandoffRequest) -> HandoffResult:
        return await self._routed_async("handoff", crm, request=request)

    async def attach_file(self, crm: str, request: AttachmentRequest) -> str | None:
        return await self._routed_async("attach_file", crm, request=request)

    async def resolve_case(self, crm: str, case_id: str) -> None:
        await self._routed_async("resolve_case", crm, case_id=case_id)

    async def read_webhook(self, crm: str, request: WebhookRequest) -> list[CrmEvent]:
        return await self._routed_async("read_webhook", crm, request=request)

    # -- transforms -----------------------------------------------------------------------

    async def handoff_policy(
        self, session: Session, transcript: Sequence[Message]
    ) -> HandoffDecision | None:
        return await self._first("handoff_policy", session=session, transcript=transcript)

    async def assistant_turn(
        self, session: Session, transcript: Sequence[Message]
    ) -> AssistantTurn | None:
        """The first assistant's turn. An assistant that raised hands the session off when no
        other answered: a customer is never left without a human because a plugin broke."""
        kwargs = {"session": session, "transcript": transcript}
        failed: list[str] = []
        for impl in self._call_order("assistant_turn"):
            turn = await self._isolated("assistant_turn", impl, kwargs, failed=failed)
            if turn is not None:
                return turn
        if failed:
            return AssistantTurn(handoff=HandoffDecision(
                f"the assistant failed ({'; '.join(failed)})", "core"))
        return None

    async def summarize(
        self, session: Session, transcript: Sequence[Message], decision: HandoffDecision
    ) -> Summary:
        summary = await self._first(
            "summarize", session=session, transcript=transcript, decision=decision
        )
        if summary is None:
            raise PluginError("no enabled plugin wrote a summary (enable 'defaults')")
        return summary

    async def map_fields(
        self, session: Session, transcript: Sequence[Message], summary: Summary
    ) -> dict[str, FieldValue]:
        """Merge every plugin's fields in a fixed order (by plugin name); a column two
        plugins set is an error unless ``[fields] prefer`` names the winner."""
        impls = sorted(self.pm.hook.map_fields.get_hookimpls(), key=lambda i: i.plugin_name)
        kwargs = {"session": session, "transcript": transcript, "summary": summary}
        merged: dict[str, FieldValue] = {}
        owner: dict[str, str] = {}
        for impl in impls:
            result = await self._isolated("map_fields", impl, kwargs)
            for column, value in (result or {}).items():
                current = merged.get(column)
                if not value.value:
                    # Left empty, with the reason in its note: never overrides a value and
                    # never conflicts with one.
                    if current is None:
                        merged[column], owner[column] = value, impl.plugin_name
                    continue
                if current is not None and current.value and owner[column] != impl.plugin_name:
                    winner = self.prefer.get(column)
                    if winner not in (owner[column], impl.plugin_name):
                        raise PluginError(
                            f"plugins {owner[column]!r} and {impl.plugin_name!r} both set the "
                            f"column {column!r}; say which wins in [fields] prefer"
                        )
                    if winner == owner[column]:
                        continue
                merged[column], owner[column] = value, impl.plugin_name
        return merged
