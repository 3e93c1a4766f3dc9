"""What a plugin may ask of the runner: :class:`PluginContext`, one per enabled plugin.

The core builds each plugin's context when it configures the plugin; the context is the
whole of the runner a plugin sees. Nothing here hands out the store, the pipeline or the
outbox: a plugin gets its own key-value state, blob storage for its files, the one path
that makes an inbound durable, and the one path that turns what a CRM reported into work.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, Unpack

import anyio
import httpx
from prometheus_client import CollectorRegistry

from . import blobs
from .fieldmap import MappedField, mapped_fields
from .model import CrmEvent, RawInbound, SessionStatus
from .store import PluginStateStore

if TYPE_CHECKING:
    from .bridge import Bridge, Received

__all__ = ["Blobs", "PluginContext", "PluginState"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class PluginState:
    """The plugin's own durable key-value state, shared by every runner on the store.

    Values are JSON-able. Keys are the plugin's own: two plugins never see each other's.
    """

    def __init__(self, store: PluginStateStore, plugin: str) -> None:
        self._store, self._plugin = store, plugin

    async def get(self, key: str) -> Any | None:
        return await self._store.get_state(self._plugin, key)

    async def put(self, key: str, value: Any) -> None:
        await self._store.put_state(self._plugin, key, value)

    async def delete(self, key: str) -> None:
        await self._store.delete_state(self._plugin, key)

    async def compare_and_put(self, key: str, expected: Any | None, value: Any | None) -> bool:
        """Set ``key`` to ``value`` only if it still holds ``expected`` (None: absent);
        ``value`` None deletes. True when the swap happened, so two runners (or two jobs)
        updating one record never lose an update."""
        return await self._store.compare_and_put_state(self._plugin, key, expected, value)


@dataclass(frozen=True)
class Blobs:
    """Content-addressed files beside the data (attachments, media): each kept once under
    its SHA-256. A location is what an :class:`~casebridge.model.Attachment` records."""

    folder: Path

    async def write(self, data: bytes, digest: str | None = None) -> str:
        """Store ``data`` (durably: written, synced, renamed) and return its location."""
        return await anyio.to_thread.run_sync(self.write_sync, data, digest)

    def write_sync(self, data: bytes, digest: str | None = None) -> str:
        """:meth:`write` for code already in a worker thread (parsing a whole message
        there); it blocks, so never call it on the event loop."""
        return blobs.write_blob(self.folder, data, digest)

    def writer(self, *, limit: int | None = None) -> blobs.BlobWriter:
        """A writer for one file too large to hold whole: write it in pieces, then
        ``commit()`` for its location (see :class:`~casebridge.blobs.BlobWriter`). Blocking:
        use it from a worker thread."""
        return blobs.BlobWriter(self.folder, limit=limit)

    def path(self, location: str) -> Path:
        """The file at ``location``; ValueError for a location no blob store wrote."""
        return blobs.blob_path(self.folder, location)

    async def read(self, location: str) -> bytes:
        return await anyio.to_thread.run_sync(self.path(location).read_bytes)


class PluginContext:
    """Everything a plugin may ask of the runner. Given to the plugin's ``configure`` hook.

    ``name`` is the plugin's name as the TOML gives it and ``settings`` its validated
    ``[plugins.<name>]`` section (or None). ``log`` is its logger and ``metrics`` the
    runner's registry, where it registers its own metrics.
    """

    def __init__(self, bridge: Bridge, name: str, settings: Any) -> None:
        self._bridge = bridge
        self.name = name
        self.settings = settings
        self.log = logging.getLogger(f"casebridge.plugins.{name}")
        self.metrics: CollectorRegistry = bridge.registry
        self.state = PluginState(bridge.store, name)
        self.blobs = Blobs(bridge.blob_dir)

    # -- where things are -----------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """The runner's data folder (a plugin keeps its own files in a folder named for it)."""
        return self._bridge.data_dir

    @property
    def base_dir(self) -> Path:
        """The folder of the TOML: relative paths in settings are relative to it."""
        return self._bridge.config.base_dir

    @property
    def public_url(self) -> str:
        """How people and providers reach the bridge's HTTP server (no trailing slash)."""
        return self._bridge.public_url

    @property
    def local_url(self) -> str:
        """The bridge's HTTP server as reached from this machine (for an in-process
        sandbox that calls the bridge back)."""
        http = self._bridge.config.http
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(  # noqa: S104
            http.host, http.host)
        return f"http://{f'[{host}]' if ':' in host else host}:{http.port}"

    @property
    def max_body_bytes(self) -> int:
        """The largest request body the bridge's HTTP routes accept."""
        return self._bridge.config.http.max_body_bytes

    def session_link(self, session_id: str) -> str:
        """A signed, expiring link to the session's page."""
        return self._bridge.session_link(session_id)

    # -- what the TOML maps (for a CRM plugin's check) ------------------------------------

    def mapped_fields(self) -> list[MappedField]:
        """Every case field the TOML maps (``[[fields.rules]]``, then each enabled plugin's
        ``[[plugins.<name>.fields]]``), so a CRM plugin's ``check`` can verify each column
        and lookup value against its CRM."""
        return mapped_fields(self._bridge.config)

    # -- the two paths into the core ------------------------------------------------------

    async def receive(self, raw: RawInbound) -> Received:
        """Parse ``raw`` with the channel's ``ingest`` and make it durable. Returns once the
        message (or why it was dropped) is committed: acknowledge the transport after this,
        never before. A ``PermanentError`` (unparseable input) is recorded as a dropped
        inbound and raised, so the transport refuses it for good."""
        return await self._bridge.receive(raw)

    async def receive_later(self, raw: RawInbound) -> None:
        """Make ``raw`` durable now (one commit) and parse it with the channel's ``ingest`` in
        the outbox, as a mail server queues before it delivers: for a transport that must
        acknowledge quickly under bursts. Acknowledge the transport after this returns.
        ``ingest`` then runs as in :meth:`receive`, except that a ``PermanentError`` can no
        longer refuse the transport: it is recorded as a dropped inbound. A raw inbound
        with neither payload nor fields raises ``PermanentError`` here."""
        await self._bridge.receive_later(raw)

    async def report_crm_events(
        self, events: Sequence[CrmEvent], *, trace_id: str = "", event_id: str = ""
    ) -> int:
        """Turn what the CRM reported (a rep's reply, a closed case) into durable work.
        ``event_id`` tells one report of a closure from another (a webhook call); a poller
        that reports each closure once passes none. Returns how many jobs were queued."""
        return await self._bridge.report_crm_events(events, trace_id=trace_id,
                                                    event_id=event_id)

    async def report_delivery(self, message_id: str, state: str, detail: str = "") -> None:
        """What became of a reply this channel sent, learned later: ``state`` "delivered",
        or "failed" with ``detail`` (a status callback, a bounce). A failure is noted on the
        session and written to the case, once. Unknown message ids are ignored."""
        await self._bridge.report_delivery(message_id, state, detail)

    async def tracked_cases(self) -> list[str]:
        """The ids of this CRM's cases that sessions with a human are linked to, newest
        first, each once: the cases a CRM plugin's poller watches for replies and closing."""
        cases: dict[str, None] = {}
        offset, page_size = 0, 200
        while True:
            page = await self._bridge.store.list_sessions(
                status=SessionStatus.HANDED_OFF, limit=page_size, offset=offset)
            for session in page:
                link = session.case
                if link is not None and link.crm == self.name and link.case_id:
                    cases[link.case_id.lower()] = None
            if len(page) < page_size:
                return list(cases)
            offset += page_size

    async def written_by_bridge(self, record_id: str) -> bool:
        """Whether the bridge wrote the CRM record ``record_id``: a CRM that takes the ids
        the bridge chooses stores each record under its write key, so a CRM plugin can tell
        its own activities from a rep's."""
        return await self._bridge.store.get_write(record_id.lower()) is not None

    # -- templates and keys (the email plugin's replies) -----------------------------------

    def add_templates(self, folder: Path) -> None:
        """Ship templates: ``folder`` joins the bridge's one loader chain, searched after the
        TOML's ``[templates] dir`` (which overrides any template by its relative path) and
        before the core's own. Call it from ``configure``. Name templates under a folder
        of the plugin's (``email/reply.txt.j2``) so two plugins' templates never collide.
        Raises ConfigError when ``folder`` is not a folder."""
        self._bridge.templates.add_folder(folder)

    def render(self, name: str, /, **variables: Any) -> str:
        """Render the template at ``name`` (``"email/reply.html.j2"``) through the chain, in
        the core's sandbox with its filters (``nl2br``, ``when``, ``safe_url``,
        ``sanitize``): ``.html.j2`` autoescapes, ``.txt.j2`` does not, an undefined
        variable is an error. Raises TemplateError (a PermanentError) naming the template,
        and where it was looked for when it is missing."""
        return self._bridge.templates.render(name, **variables)

    def derived_key(self, purpose: bytes) -> bytes:
        """A 32-byte secret for ``purpose`` (a reply token's signature), derived from the
        bridge's link secret: stable across restarts and runners, and never the link
        secret itself, so one key never signs two kinds of thing."""
        return hmac.new(self._bridge.link_secret, purpose, hashlib.sha256).digest()

    # -- helpers --------------------------------------------------------------------------

    async def run_cpu(self, fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
        """``fn(*args)``, CPU-bound work that touches no plugin state (parsing a message),
        in one of the runner's worker processes, so it runs on another core than the event
        loop (``[bridge] parse_processes``; with none, in a worker thread). ``fn`` must be a
        module-level function and its arguments and result picklable; its exception is
        raised here, as is ``casebridge.processes.WorkerDied`` when the process died."""
        return await self._bridge.processes.run(fn, *args)

    def http_client(self, base_url: str = "", *, timeout: float = 30.0,
                    max_connections: int = 16, **kwargs: Any) -> httpx.AsyncClient:
        """An HTTP client with bounded timeouts and connections and the bridge's User-Agent.
        Retries are the outbox's: do not loop on failures inside a job."""
        from . import __version__

        return httpx.AsyncClient(
            base_url=base_url, timeout=httpx.Timeout(timeout),
            # Keep every connection alive: httpcore closes idle ones above 20 by default.
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=max_connections),
            headers={"User-Agent": f"casebridge/{__version__} ({self.name})"}, **kwargs,
        )
