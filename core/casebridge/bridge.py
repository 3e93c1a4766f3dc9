"""The runner: one configuration, one PluginManager, one store, one outbox, one web app.

Plugins receive the :class:`Bridge` in ``configure``, ``services`` and ``http_routes``; the
methods they may use are the public ones below (``receive``, ``report_delivery``,
``settings``, ``store``, ``data_dir``, ``public_url``, ``session_link``, ``metrics``,
``templates``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import tempfile
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pluggy
from anyio.abc import TaskGroup, TaskStatus

from . import blobs, deliveries
from . import config as configuration
from .backoff import BackoffPolicy
from .context import PluginContext
from .contributions import Address
from .defaults import DefaultsPlugin
from .jobs import crm_event_jobs
from .links import sign_session_link
from .logs import new_trace_id
from .metrics import BridgeMetrics, new_registry
from .model import CrmEvent, RawInbound, utcnow
from .outbox import Outbox, OutboxEvent
from .pipeline import Pipeline
from .plugins import Hooks, LoadReport, load_entry_points, new_manager
from .processes import Processes, default_processes
from .receiving import Received
from .replies import undelivered_job
from .singletons import locks_for, run_singleton
from .store import NewJob, Store
from .stores import open_store_for
from .templates import Templates

log = logging.getLogger(__name__)


class Bridge:
    """Everything one runner owns. Build with :meth:`from_config`."""

    def __init__(
        self, config: configuration.Config, pm: pluggy.PluginManager, report: LoadReport
    ) -> None:
        self.config = config
        self.pm = pm
        self.load_report = report
        self.registry = new_registry()
        self.metrics = BridgeMetrics(self.registry)
        self.hooks = Hooks(pm, prefer=config.fields.prefer, metrics=self.metrics)
        self.data_dir = config.data_dir
        self.public_url = config.bridge.public_url.rstrip("/")
        self.store: Store = open_store_for(config)
        # Where singleton services (Service.singleton) learn whether they run here.
        self.singletons = locks_for(config)
        override = config.templates.dir
        self.templates = Templates(config.base_dir / override if override else None)
        self._settings: dict[str, Any] = {}
        self._link_key: bytes | None = None
        configured = config.bridge.parse_processes
        self.processes = Processes(default_processes() if configured is None else configured)
        self.pipeline = Pipeline(self)
        out = config.outbox
        self.outbox = Outbox(
            self.store,
            self.pipeline.handlers,
            workers=out.workers,
            lease=timedelta(seconds=out.lease_seconds),
            policy=BackoffPolicy(
                base=out.backoff_base, factor=out.backoff_factor, cap=out.backoff_cap,
                jitter=out.jitter, max_attempts=out.max_attempts,
            ),
            worker_id=f"{socket.gethostname()}:{os.getpid()}",
            poll_interval=out.poll_seconds,
            on_event=self._job_event,
            on_dead=self.pipeline.on_dead,
        )

    def _job_event(self, event: OutboxEvent) -> None:
        kind = event.job.kind
        if event.kind == "retry":
            self.metrics.job_retries.labels(kind=kind).inc()
        elif event.kind == "dead":
            self.metrics.dead_letters.labels(kind=kind).inc()
            log.error("job %s (%s) dead after %d attempts: %s", event.job.id, kind,
                      event.job.attempts, event.error)
        if event.kind in ("done", "retry", "dead"):
            self.metrics.job_duration.labels(kind=kind).observe(event.duration)

    @classmethod
    def from_config(
        cls, path: Path, *, strict: bool | None = None, plugins: Mapping[str, object] | None = None
    ) -> Bridge:
        """Load the TOML, the enabled plugins and their settings; open nothing yet.

        ``plugins`` are registered in-process under their names before the entry points (an
        application embedding casebridge, or a test); the TOML must still enable them.
        """
        config = configuration.load(path)
        pm = new_manager()
        for name, plugin in (plugins or {}).items():
            if name not in config.enabled:
                raise configuration.ConfigError(
                    f"{path}: plugin {name!r} is given in-process but the TOML does not enable it"
                )
            pm.register(plugin, name=name)
        report = load_entry_points(
            pm,
            enabled=config.enabled,
            strict=config.bridge.strict if strict is None else strict,
        )
        bridge = cls(config, pm, report)
        bridge.configure_plugins()
        return bridge

    def configure_plugins(self) -> None:
        sections = self.hooks.config_sections()
        unclaimed = sorted(set(self.config.plugin_tables) - set(sections))
        for name in unclaimed:
            if self.pm.get_plugin(name) is None:
                log.warning("[plugins.%s] is set but the plugin is not enabled: ignored", name)
            else:
                raise configuration.ConfigError(
                    f"{self.config.path}: [plugins.{name}]: plugin {name!r} takes no settings"
                )
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            section = sections.get(name)
            settings = None
            if section is not None:
                settings = configuration.build(
                    section.schema, self.config.plugin_tables.get(name, {}),
                    path=self.config.path, where=f"plugins.{name}",
                )
            self._settings[name] = settings
            self.hooks.configure(name, PluginContext(self, name, settings))
        defaults = self.pm.get_plugin("defaults")
        if isinstance(defaults, DefaultsPlugin):  # the core's own: it reads the core's TOML
            defaults.use(self.config.handoff, self.config.fields)

    # -- what plugins use -----------------------------------------------------------------

    def settings(self, plugin: str) -> Any:
        return self._settings.get(plugin)

    @property
    def blob_dir(self) -> Path:
        """Where channels keep attachments (``casebridge.blobs``); locations are relative."""
        return self.data_dir / blobs.FOLDER

    def addresses(self) -> list[Address]:
        """Every address a person uses: the bridge, its dashboard, and each plugin's (see the
        ``addresses`` hook). Meaningful once :meth:`run` has started everything."""
        http = self.config.http
        own = [
            Address("Bridge (API, webhooks)", f"http://{http.host}:{http.port}",
                    f"public URL {self.public_url}" if self.public_url != (
                        f"http://{http.host}:{http.port}") else ""),
            Address("Dashboard", f"{self.public_url}/"),
        ]
        return own + self.hooks.addresses()

    def plugin_names(self) -> list[str]:
        return sorted(name for name, plugin in self.pm.list_name_plugin() if plugin is not None)

    @property
    def link_secret(self) -> bytes:
        configured = self.config.bridge.link_secret
        if configured:
            return configured.reveal().encode()
        return self._generated_secret()

    def _generated_secret(self) -> bytes:
        # With no secret configured, one is made on first use and kept beside the data, so
        # links stay valid across restarts. Read once: every activity's link is signed with
        # it, and a file read per handoff showed in the profile.
        if self._link_key is not None:
            return self._link_key
        path = self.data_dir / "link.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            # Written aside, then linked into place: runners sharing the folder that make
            # a key at the same moment agree on the first, and none reads a half-written one.
            fd, aside = tempfile.mkstemp(prefix=".link.key-", dir=self.data_dir)
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(secrets.token_hex(32))
                with contextlib.suppress(FileExistsError):
                    os.link(aside, path)
            finally:
                os.unlink(aside)
        self._link_key = path.read_text().strip().encode()
        return self._link_key

    def session_link(self, session_id: str) -> str:
        expires = utcnow() + timedelta(days=self.config.bridge.link_ttl_days)
        return sign_session_link(self.public_url, session_id, self.link_secret,
                                 expires_at=expires)

    async def receive(self, raw: RawInbound) -> Received:
        """Parse a raw inbound with its channel's ``ingest`` and make it durable.

        Returns once the message (or the reason it was dropped) is committed: the channel
        may acknowledge its transport after this and not before.
        """
        return await self.pipeline.receiving.receive(raw)

    async def receive_later(self, raw: RawInbound) -> None:
        """Make a raw inbound durable now and parse it in the outbox (see
        :mod:`casebridge.receiving`); the channel may acknowledge once this returns."""
        await self.pipeline.receiving.receive_later(raw)

    async def report_delivery(self, message_id: str, state: str, detail: str = "") -> None:
        """A channel learned later what became of a reply it sent: ``state`` "delivered", or
        "failed" with ``detail`` (an SMS status callback, a bounce). A failure is noted on
        the session and written to the case, once. Unknown message ids are ignored."""
        message = await self.store.get_message(message_id)
        if message is None or not deliveries.tracked(message):
            return
        record = await deliveries.report(self.store, message_id,
                                         deliveries.ReplyState(state), detail)
        failed = (deliveries.ReplyState.FAILED, deliveries.ReplyState.REFUSED)
        if record is not None and record.state in failed and message.session_id:
            await self.enqueue(undelivered_job(message))

    async def report_crm_events(
        self, events: Sequence[CrmEvent], *, trace_id: str = "", event_id: str = ""
    ) -> int:
        """Turn what a CRM reported (a rep's reply, a closed case) into durable jobs, the one
        path for its webhook and its poller alike; returns how many were queued."""
        jobs = crm_event_jobs(events, trace_id or new_trace_id(), event_id)
        if jobs:
            await self.enqueue(*jobs)
        return len(jobs)

    async def enqueue(self, *jobs: NewJob) -> None:
        await self.store.enqueue(list(jobs))
        self.outbox.wake()

    # -- running --------------------------------------------------------------------------

    async def open(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        await self.store.open()

    async def close(self) -> None:
        try:
            await self.processes.aclose()
        finally:
            await self.store.close()

    async def start_services(self, tg: TaskGroup) -> None:
        """Start every enabled plugin's services in ``tg``, each once it reports ready; a
        singleton under its lock, so it runs here only while this runner holds it."""
        for service in self.hooks.services():
            log.info("starting %s", service.name)
            if service.singleton:
                await tg.start(run_singleton, service, self.singletons)
            else:
                await tg.start(service.run)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled: the web app, every plugin service and the outbox."""
        from .web import create_app, serve

        await self.open()
        try:
            async with anyio.create_task_group() as tg:
                await self.start_services(tg)
                await tg.start(serve, create_app(self), self.config.http.host,
                               self.config.http.port)
                await tg.start(self.outbox.run)
                log.info("casebridge is running (HTTP on %s:%s)", self.config.http.host,
                         self.config.http.port)
                task_status.started()
        finally:
            with anyio.CancelScope(shield=True):
                await self.close()

