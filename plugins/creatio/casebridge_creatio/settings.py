"""The ``[plugins.creatio]`` section of the TOML, and Creatio's seeded lookup GUIDs."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from casebridge.plugin import Secret

from .odata import is_guid

# Seeded records every Creatio instance ships with (see shared/CREATIO.md).
STATUS_NEW = "ae5f2f10-f46b-1410-fd9a-0050ba5d6c38"
STATUS_RESOLVED = "ae7f411e-f46b-1410-009b-0050ba5d6c38"
ORIGIN_EMAIL = "7f9e1f1e-f46b-1410-3492-0050ba5d6c38"
CASE_PRIORITY_MEDIUM = "d9bd322c-f46b-1410-ee8c-0050ba5d6c38"
ACTIVITY_TYPE_EMAIL = "e2831dec-cfc0-df11-b00f-001d60e938c6"
ACTIVITY_TYPE_TASK = "fbe0acdc-cfc0-df11-b00f-001d60e938c6"
ACTIVITY_TYPE_CALL = "e1831dec-cfc0-df11-b00f-001d60e938c6"
ACTIVITY_CATEGORY_EMAIL = "8038a396-7825-e011-8165-00155d043204"
ACTIVITY_CATEGORY_TODO = "f51c4643-58e6-df11-971b-001d60e938c6"
ACTIVITY_STATUS_COMPLETED = "4bdbb88f-58e6-df11-971b-001d60e938c6"
ACTIVITY_PRIORITY_MEDIUM = "ab96fa02-7fe6-df11-971b-001d60e938c6"
MESSAGE_TYPE_INCOMING = "7f9d1f86-f36b-1410-068c-20cf30b39373"
MESSAGE_TYPE_OUTGOING = "7f6d3f94-f36b-1410-068c-20cf30b39373"
COMMUNICATION_EMAIL = "ee1c85c3-cfcb-df11-9b2a-001d60e938c6"
COMMUNICATION_MOBILE = "d4a2dc80-30ca-df11-9b2a-001d60e938c6"
FILE_TYPE_FILE = "529bc2f8-0ee0-df11-971b-001d60e938c6"

SANDBOX_URL = "sandbox"
# The name the entry point registers the plugin under. A configured plugin uses the name the
# TOML gives it (its context's), so two Creatio tenants can run as two plugins.
DEFAULT_NAME = "creatio"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class CreatioSettings:
    """How casebridge reaches one Creatio instance and what it writes there.

    ``url`` is the instance (``https://acme.creatio.com``); the special value ``"sandbox"``
    means the in-process Creatio sandbox, whose credentials the runner fills in. ``auth``
    "login" needs ``username`` and ``password``; "oauth" needs ``identity_url`` (the identity
    server, e.g. ``https://acme-is.creatio.com``), ``client_id`` and ``client_secret``.

    Activities for channels other than e-mail get ``sms_activity_type_id``: Task by default,
    because the reply business process the README describes listens for Email and Task
    activities, so a rep's SMS reply written as a Task reaches the bridge.

    Every activity the bridge writes carries ``casebridge:<key>`` in ``marker_column``
    (``DetailedResult`` by default, a text column reps rarely see), so the reply webhook can
    ignore the bridge's own activities and a retried write can be found even on a server
    that does not keep client-chosen ids. Cases and activities also get the key as their Id.

    ``sandbox_port`` is where the in-process sandbox listens on 127.0.0.1 (0: a free port the
    OS picks); only used with ``url = "sandbox"``.

    Each request is made once: a failed write or read raises, and the outbox retries the job
    with its own backoff (``[outbox]``), so there are no retry settings here.
    """

    url: str
    auth: Literal["login", "oauth"] = "login"
    sandbox_port: int = 0
    odata_prefix: str = "/0"
    username: str = ""
    password: Secret | None = None
    identity_url: str = ""
    client_id: str = ""
    client_secret: Secret | None = None
    timeout: float = 30.0
    max_concurrency: int = 8
    # A request waits out another's Retry-After for at most this long (holding its job);
    # a longer wait is handed to the outbox, which frees the worker meanwhile.
    max_retry_wait: float = 10.0
    treat_resolved_as_open: bool = True
    open_status_ids: list[str] = field(default_factory=list)
    origin_ids: dict[str, str] = field(default_factory=lambda: {"email": ORIGIN_EMAIL})
    origin_names: dict[str, str] = field(default_factory=lambda: {"sms": "SMS"})
    new_status_id: str = STATUS_NEW
    resolved_status_id: str = STATUS_RESOLVED
    # When casebridge closes a conversation, set the case to resolved_status_id.
    resolve_on_close: bool = False
    priority_id: str = CASE_PRIORITY_MEDIUM
    owner_id: str = ""
    group_id: str = ""
    sms_activity_type_id: str = ACTIVITY_TYPE_TASK
    marker_column: str = "DetailedResult"
    lookup_entities: dict[str, str] = field(default_factory=dict)
    strict_lookups: bool = False
    use_batch: bool = True
    # A handoff as one $batch of reads and one atomic $batch of writes carrying casebridge's
    # own Ids; off for a Creatio that ignores client-chosen Ids or refuses atomicity groups.
    atomic_handoff: bool = True
    upload_attachments: bool = True
    case_url_template: str = "{url}{prefix}/Shell/#Card/Case_FormPage/edit/{id}"
    webhook_token: Secret | None = None
    webhook_secret_header: str = "X-Casebridge-Secret"  # noqa: S105 - a header name
    webhook_secret: Secret | None = None
    reconcile_interval: float = 300.0

    def __post_init__(self) -> None:
        url = self.url.strip().rstrip("/")
        if not url:
            raise ValueError('url: the Creatio instance URL is required (or "sandbox")')
        if url != SANDBOX_URL and not re.match(r"https?://[^/\s]+", url):
            raise ValueError(f'url: expected http(s)://host or "sandbox", got {url!r}')
        object.__setattr__(self, "url", url)
        if not 0 <= self.sandbox_port < 65536:
            raise ValueError(f"sandbox_port {self.sandbox_port} is not a TCP port")
        prefix = self.odata_prefix.strip().rstrip("/")
        if prefix and not re.fullmatch(r"(/[A-Za-z0-9_.-]+)+", prefix):
            raise ValueError(f'odata_prefix: expected "" or a path like "/0", got {prefix!r}')
        object.__setattr__(self, "odata_prefix", prefix)
        object.__setattr__(self, "identity_url", self.identity_url.strip().rstrip("/"))
        self._check_auth(url)
        self._check_numbers()
        self._check_ids()
        for column in (self.marker_column, *self.lookup_entities, *self.lookup_entities.values()):
            if column and not _IDENTIFIER.fullmatch(column):
                raise ValueError(f"{column!r} is not a Creatio column or entity name")

    def _check_auth(self, url: str) -> None:
        # The runner supplies the sandbox's own credentials, so they may be absent here.
        if url == SANDBOX_URL:
            return
        if self.auth == "login":
            if not self.username or not self.password:
                raise ValueError('auth = "login" needs username and password')
        elif self.auth == "oauth":
            missing = [
                name
                for name, value in (
                    ("identity_url", self.identity_url),
                    ("client_id", self.client_id),
                    ("client_secret", self.client_secret),
                )
                if not value
            ]
            if missing:
                raise ValueError(f'auth = "oauth" needs {", ".join(missing)}')
            if not re.match(r"https?://[^/\s]+", self.identity_url):
                raise ValueError(
                    f"identity_url: expected http(s)://host, got {self.identity_url!r}"
                )
        else:
            raise ValueError(f'auth: expected "login" or "oauth", got {self.auth!r}')

    def _check_numbers(self) -> None:
        if self.timeout <= 0:
            raise ValueError("timeout must be more than 0 seconds")
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if self.max_retry_wait < 0 or self.reconcile_interval < 0:
            raise ValueError("max_retry_wait and reconcile_interval must be 0 or more")

    def _check_ids(self) -> None:
        single = {
            "new_status_id": self.new_status_id,
            "resolved_status_id": self.resolved_status_id,
            "priority_id": self.priority_id,
            "owner_id": self.owner_id,
            "group_id": self.group_id,
            "sms_activity_type_id": self.sms_activity_type_id,
        }
        for name, value in single.items():
            if value and not is_guid(value):
                raise ValueError(f"{name}: {value!r} is not a GUID")
        for channel, value in self.origin_ids.items():
            if not is_guid(value):
                raise ValueError(f"origin_ids.{channel}: {value!r} is not a GUID")
        for value in self.open_status_ids:
            if not is_guid(value):
                raise ValueError(f"open_status_ids: {value!r} is not a GUID")

    @property
    def odata_root(self) -> str:
        """``{url}{odata_prefix}/odata``: the base of every entity URL."""
        return f"{self.url}{self.odata_prefix}/odata"

    def case_url(self, case_id: str) -> str:
        """The link a rep opens to see the case."""
        return self.case_url_template.format(url=self.url, prefix=self.odata_prefix, id=case_id)
