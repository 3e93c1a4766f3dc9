"""The Creatio plugin: the pluggy glue between casebridge's pipeline and Creatio.

The entry point ``creatio = "casebridge_creatio.plugin:CreatioPlugin"`` names
:class:`CreatioPlugin`; one instance serves one runner and keeps its state (its context, the
OData client, the sandbox) on itself. It names itself as the TOML names it (its context's
``name``): in its case references, CRM events, checks and webhook path. The work is done by
:mod:`.operations` (CRM writes and reads), :mod:`.handoff` (a handoff in two round trips),
:mod:`.webhook` (business-process calls) and :mod:`.reconcile` (the poll that covers lost
calls). With ``url = "sandbox"`` the runner also serves the Creatio sandbox on a loopback
port, with its business processes pointed at the bridge's own webhook.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio
import httpx
from anyio.abc import TaskStatus
from casebridge.plugin import (
    ActivityRef,
    ActivityRequest,
    Address,
    AttachmentRequest,
    CasebridgeError,
    CaseRef,
    CaseRequest,
    CheckResult,
    Command,
    ConfigSection,
    Contact,
    CrmEvent,
    HandoffRequest,
    HandoffResult,
    MappedField,
    PermanentError,
    PluginContext,
    Secret,
    Service,
    TransientError,
    WebhookRefused,
    WebhookRequest,
    hookimpl,
    serve_http,
)

from .client import CreatioClient
from .handoff import AtomicHandoff
from .health import check_operations
from .operations import CreatioOperations
from .reconcile import PollResult, Reconciler
from .settings import DEFAULT_NAME, SANDBOX_URL, CreatioSettings
from .webhook import (
    CASE_CLOSED,
    CASE_STATUS_CHANGED,
    NEW_ACTIVITY,
    authenticate,
    ignore_reason,
    parse_event,
    reply_from_activity,
    reply_type_ids,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from .sandbox import Sandbox, SandboxSettings

log = logging.getLogger("casebridge.creatio")

# The sandbox's seeded credentials (see casebridge_creatio.sandbox.settings).
SANDBOX_USER = "Supervisor"
SANDBOX_PASSWORD = "Supervisor"  # noqa: S105 - the sandbox's published demo password
SANDBOX_CLIENT_ID = "casebridge-sandbox"
SANDBOX_CLIENT_SECRET = "sandbox-secret"  # noqa: S105 - the sandbox's published demo secret
SANDBOX_DATABASE = "creatio-sandbox.sqlite"
# Start-up retries of prepare() when Creatio is unreachable: first wait, and the longest.
PREPARE_RETRY_FIRST = 5.0
PREPARE_RETRY_MAX = 300.0


class CreatioPlugin:
    """Creatio as casebridge's CRM. See the module docstring."""

    # The entry point's name until ``configure`` gives the TOML's.
    name = DEFAULT_NAME

    def __init__(self) -> None:
        self.context: PluginContext | None = None
        self.webhook_token: Secret | None = None
        self.sandbox: Sandbox | None = None
        self.sandbox_url = ""
        self._client: CreatioClient | None = None
        self._ops: CreatioOperations | None = None
        self._reconciler: Reconciler | None = None
        self._lock: anyio.Lock | None = None
        # Set once the connector has loaded statuses and origins (tests wait on it).
        self.prepared: anyio.Event | None = None

    def __repr__(self) -> str:
        where = self.context.settings.url if self.context else "unconfigured"
        return f"CreatioPlugin({self.name}, {where})"

    @property
    def _context(self) -> PluginContext:
        """The context ``configure`` gave; the one guard against use before it."""
        if self.context is None:
            raise PermanentError(f"the {self.name} plugin was used before it was configured")
        return self.context

    @property
    def settings(self) -> CreatioSettings:
        """The validated ``[plugins.<name>]`` section."""
        settings: CreatioSettings = self._context.settings
        return settings

    # -- set-up -------------------------------------------------------------------------------

    @hookimpl
    def config_section(self) -> ConfigSection:
        return ConfigSection(self.name, CreatioSettings)

    @hookimpl
    def configure(self, context: PluginContext) -> None:
        self.context, self.name = context, context.name
        settings = self.settings
        self.webhook_token = settings.webhook_token or None
        if self.webhook_token is None and settings.url == SANDBOX_URL:
            # The sandbox posts to our webhook; a token made per runner keeps it closed to
            # everyone else.
            self.webhook_token = Secret(secrets.token_urlsafe(24), "generated for the sandbox")
        elif self.webhook_token is None:
            log.warning(
                "[plugins.%s] has no webhook_token: business-process calls are refused "
                "and agent replies arrive only through the reconciliation poll", self.name
            )

    @hookimpl
    def services(self) -> list[Service]:
        found: list[Service] = []
        if self.settings.url == SANDBOX_URL:
            found.append(Service(f"{self.name} sandbox", self._run_sandbox))
        found.append(Service(self.name, self._run_connector))
        if self.settings.reconcile_interval > 0:
            found.append(Service(f"{self.name} reconcile", self._run_reconciler,
                                 singleton=True))
        else:
            log.info("Creatio reconciliation poll is off (reconcile_interval = 0)")
        return found

    @hookimpl
    def addresses(self) -> list[Address]:
        if not self.sandbox_url:
            return []
        return [Address("Creatio sandbox", f"{self.sandbox_url}/sandbox/cases",
                        f"user {SANDBOX_USER}, password {SANDBOX_PASSWORD}")]

    @hookimpl
    def cli_commands(self) -> list[Command]:
        # Imported here: the runner then loads the sandbox's web stack only in sandbox mode.
        from .sandbox_command import sandbox_commands

        return sandbox_commands()

    # -- health -------------------------------------------------------------------------------

    @hookimpl
    async def check(self) -> CheckResult:
        settings = self.settings
        fields = self._context.mapped_fields()
        if settings.url == SANDBOX_URL and self.sandbox is None:
            return await self._check_detached_sandbox(fields)
        if self._ops is not None:
            return await check_operations(self._ops, fields)
        # Outside the runner (`casebridge check`): a client of its own, closed afterwards.
        async with CreatioClient(settings) as client:
            return await check_operations(CreatioOperations(client, settings, self.name), fields)

    async def _check_detached_sandbox(self, fields: Sequence[MappedField]) -> CheckResult:
        # `casebridge check` runs no services: try the settings against a sandbox of our own,
        # served in memory, so the GUIDs are checked against the same seed data.
        from .sandbox import create_sandbox_app

        app = create_sandbox_app(self._sandbox_settings(detached=True))
        base = "http://creatio-sandbox.invalid"
        settings = self._with_sandbox_credentials(base)
        try:
            async with CreatioClient(settings, transport=httpx.ASGITransport(app=app)) as client:
                ops = CreatioOperations(client, settings, self.name)
                result = await check_operations(ops, fields)
        finally:
            app.state.sandbox.store.close()
        if result.ok:
            return CheckResult(self.name, True,
                               "Active (the in-process sandbox; it starts with run)")
        return result

    # -- CRM hooks ----------------------------------------------------------------------------

    @hookimpl
    async def sync_contact(self, contact: Contact) -> Contact:
        return await (await self.operations()).sync_contact(contact)

    @hookimpl
    async def find_open_case(self, contact: Contact) -> CaseRef | None:
        return await (await self.operations()).find_open_case(contact)

    @hookimpl
    async def get_case(self, case_id: str) -> CaseRef | None:
        return await (await self.operations()).get_case(case_id)

    @hookimpl
    async def create_case(self, request: CaseRequest) -> CaseRef:
        return await (await self.operations()).create_case(request)

    @hookimpl
    async def append_activity(self, request: ActivityRequest) -> ActivityRef:
        return await (await self.operations()).append_activity(request)

    @hookimpl
    async def append_activities(self, requests: Sequence[ActivityRequest]) -> list[ActivityRef]:
        # A handoff's messages in $batch calls: round trips per handoff stay constant.
        return await (await self.operations()).append_activities(requests)

    @hookimpl
    async def handoff(self, request: HandoffRequest) -> HandoffResult:
        # Two round trips per handoff (reads, then atomic writes); see .handoff.
        return await AtomicHandoff(await self.operations(), self._context.state).run(request)

    @hookimpl
    async def attach_file(self, request: AttachmentRequest) -> str | None:
        ops = await self.operations()
        if not ops.settings.upload_attachments:
            return None  # the activity text names the file
        return await ops.attach_file(request)

    @hookimpl
    async def resolve_case(self, case_id: str) -> None:
        ops = await self.operations()
        if ops.settings.resolve_on_close:
            await ops.resolve_case(case_id)

    @hookimpl
    async def read_webhook(self, request: WebhookRequest) -> list[CrmEvent]:
        settings = self.settings
        authenticate(
            request.path_token,
            request.headers,
            token=self.webhook_token,
            secret=settings.webhook_secret or None,
            secret_header=settings.webhook_secret_header,
        )
        event = parse_event(request.body)
        try:
            ops = await self.operations()
            if event.kind == NEW_ACTIVITY:
                return await self._activity_events(ops, event.activity_id)
            if event.kind in (CASE_CLOSED, CASE_STATUS_CHANGED):
                return await self._closed_events(ops, event.case_id)
        except TransientError as exc:
            # Creatio's process retries (the sandbox does; the poll covers a real one).
            raise WebhookRefused(f"cannot read the event back from Creatio now: {exc}",
                                 status=503) from None
        except PermanentError as exc:
            raise WebhookRefused(f"cannot read the event back from Creatio: {exc}",
                                 status=502) from None
        return []

    async def _activity_events(self, ops: CreatioOperations, activity_id: str) -> list[CrmEvent]:
        # Activities the bridge writes carry its write key as their Id: those are known
        # without reading them back, which saves a request per activity of every handoff.
        if await self._context.written_by_bridge(activity_id):
            log.debug("webhook: activity %s was written by casebridge; ignored", activity_id)
            return []
        activity = await ops.read_activity(activity_id)
        if activity is None:
            log.info("webhook: activity %s is not in Creatio; ignored", activity_id)
            return []
        reason = ignore_reason(activity, reply_type_ids(ops.settings.sms_activity_type_id))
        if reason:
            log.debug("webhook: activity %s ignored: %s", activity_id, reason)
            return []
        reply = reply_from_activity(activity, self.name)
        if reply is None:
            log.info("webhook: activity %s has no text; ignored", activity_id)
            return []
        return [CrmEvent("agent_reply", self.name, reply.case_id, reply)]

    async def _closed_events(self, ops: CreatioOperations, case_id: str) -> list[CrmEvent]:
        # The call says which case; Creatio says whether it is closed. A process built on
        # "status changed" without the final-status filter then closes nothing by mistake.
        case = await ops.get_case(case_id)
        if case is None or case.is_open:
            log.info("webhook: case %s is %s; not closing its sessions", case_id,
                     "missing" if case is None else "still open")
            return []
        return [CrmEvent("case_closed", self.name, case.id)]

    # -- the client -----------------------------------------------------------------------------

    async def operations(self) -> CreatioOperations:
        """The operations on the configured Creatio, built on first use."""
        if self._ops is None:
            settings = self.settings
            if settings.url == SANDBOX_URL:
                raise TransientError(
                    "the Creatio sandbox is not running yet (it starts with casebridge run)"
                )
            if self._lock is None:
                self._lock = anyio.Lock()
            async with self._lock:
                if self._ops is None:
                    await self._connect(settings)
        assert self._ops is not None
        return self._ops

    async def _connect(self, settings: CreatioSettings) -> None:
        self._client = CreatioClient(settings)
        self._ops = CreatioOperations(self._client, settings, self.name)

    async def _disconnect(self) -> None:
        client, self._client, self._ops = self._client, None, None
        if client is not None:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    # -- services -------------------------------------------------------------------------------

    async def _run_connector(self, *, task_status: TaskStatus[None]) -> None:
        """Prepare the operations (retrying while Creatio is unreachable), then hold the
        client open until shutdown."""
        settings = self.settings
        self.prepared = anyio.Event()
        task_status.started()
        try:
            await self._prepare()
            self.prepared.set()
            await anyio.sleep_forever()
        finally:
            if settings.url != SANDBOX_URL:
                await self._disconnect()

    async def _run_reconciler(self, *, task_status: TaskStatus[None]) -> None:
        """The reconciliation poll, every ``reconcile_interval``: a singleton, so of several
        runners on one store only one polls (and another takes over when it dies)."""
        task_status.started()
        if self.prepared is not None:
            await self.prepared.wait()
        while True:
            await self._poll_logged()
            await anyio.sleep(self.settings.reconcile_interval)

    async def _prepare(self) -> None:
        wait = PREPARE_RETRY_FIRST
        while True:
            try:
                ops = await self.operations()
                await ops.prepare()
            except TransientError as exc:
                log.error("Creatio at %s is unreachable (%s); retrying in %.0f s",
                          self.settings.url, exc, wait)
            except PermanentError as exc:
                log.error("Creatio at %s refused to start: %s (see casebridge check); "
                          "retrying in %.0f s", self.settings.url, exc, wait)
            except Exception:
                # Whatever went wrong, the runner keeps serving the other plugins.
                log.exception("preparing Creatio at %s failed; retrying in %.0f s",
                              self.settings.url, wait)
            else:
                log.info("Creatio at %s is ready", ops.settings.url)
                return
            await anyio.sleep(wait)
            wait = min(PREPARE_RETRY_MAX, wait * 2)

    async def _poll_logged(self) -> None:
        try:
            await self.reconcile_once()
        except CasebridgeError as exc:
            log.warning("Creatio reconciliation poll failed: %s; next try in %.0f s",
                        exc, self.settings.reconcile_interval)
        except Exception:
            log.exception("Creatio reconciliation poll failed; next try in %.0f s",
                          self.settings.reconcile_interval)

    async def reconcile_once(self) -> PollResult:
        """One reconciliation poll now (the service runs it every ``reconcile_interval``)."""
        if self._reconciler is None:
            self._reconciler = Reconciler(self._context, self.operations)
        return await self._reconciler.poll_once()

    async def _run_sandbox(self, *, task_status: TaskStatus[None]) -> None:
        """Serve the Creatio sandbox on 127.0.0.1 and point the client at it."""
        from .sandbox import create_sandbox_app

        app: Starlette = create_sandbox_app(self._sandbox_settings())
        # The sandbox delivers business-process calls while its lifespan runs.
        async with app.router.lifespan_context(app), anyio.create_task_group() as tg:
            port = await tg.start(serve_http, app, "127.0.0.1", self.settings.sandbox_port)
            self.sandbox_url = f"http://127.0.0.1:{port}"
            self.sandbox = app.state.sandbox
            await self._connect(self._with_sandbox_credentials(self.sandbox_url))
            log.info("Creatio sandbox at %s/sandbox/cases (API user %s, password %s)",
                     self.sandbox_url, SANDBOX_USER, SANDBOX_PASSWORD)
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                await self._disconnect()
                self.sandbox = None

    def _sandbox_settings(self, *, detached: bool = False) -> SandboxSettings:
        """The in-process sandbox's settings; ``detached`` (for a check outside the runner)
        posts nowhere and keeps nothing on disk."""
        from .sandbox import SandboxSettings, SandboxUser
        from .sandbox.settings import SUPERVISOR_CONTACT_ID

        settings = self.settings
        users = [SandboxUser(SANDBOX_USER, Secret(SANDBOX_PASSWORD, "sandbox default"),
                             SUPERVISOR_CONTACT_ID)]
        if _has_login(settings):
            # Credentials given in the TOML work against the sandbox too.
            users.insert(0, SandboxUser(settings.username, settings.password,
                                        SUPERVISOR_CONTACT_ID))
        extra: dict[str, Any] = {}
        if _has_client(settings):
            extra = {"oauth_client_id": settings.client_id,
                     "oauth_client_secret": settings.client_secret}
        return SandboxSettings(
            users=tuple(users),
            oauth_user=users[0].name,
            path_prefix=settings.odata_prefix,
            webhook_url=None if detached else self.bridge_webhook_url(),
            webhook_secret=settings.webhook_secret or None,
            webhook_header=settings.webhook_secret_header,
            database=None if detached else self._context.data_dir / SANDBOX_DATABASE,
            **extra,
        )

    def bridge_webhook_url(self) -> str:
        """Where the in-process sandbox posts: the bridge's own HTTP server, reached on
        loopback (``public_url`` is for browsers and may point elsewhere)."""
        local = self._context.local_url
        if self.webhook_token is None:
            raise PermanentError(f"the {self.name} plugin was used before it was configured")
        if local.endswith(":0"):
            log.warning("[http] port = 0: the Creatio sandbox cannot know where to post; "
                        "replies arrive through the reconciliation poll only")
        return f"{local}/webhooks/{self.name}/{self.webhook_token.reveal()}"

    def _with_sandbox_credentials(self, url: str) -> CreatioSettings:
        settings = self.settings
        login = {} if _has_login(settings) else {
            "username": SANDBOX_USER, "password": Secret(SANDBOX_PASSWORD, "sandbox default")}
        client = {} if _has_client(settings) else {
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": Secret(SANDBOX_CLIENT_SECRET, "sandbox default")}
        return replace(settings, url=url, identity_url=url, **login, **client)


def _has_login(settings: CreatioSettings) -> bool:
    return bool(settings.username and settings.password)


def _has_client(settings: CreatioSettings) -> bool:
    return bool(settings.client_id and settings.client_secret)
