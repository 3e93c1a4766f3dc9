"""The sandbox's configuration: who may log in, where OData lives, where business processes
post, which faults to inject, and where data is kept."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from casebridge.plugin import Secret

DEFAULT_PROCESSES = frozenset({"new_activity", "case_closed"})
KNOWN_PROCESSES = frozenset({"new_activity", "case_closed", "case_status_changed"})


@dataclass(frozen=True, slots=True)
class SandboxUser:
    """A Creatio user that may log in through AuthService; ``contact_id`` is its Contact."""

    name: str
    password: Secret
    contact_id: str


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """Faults injected into API requests (AuthService, OData, FileApiService, token).

    Every ``*_rate`` is a share between 0 and 1 drawn from a generator seeded with ``seed``,
    so a run is reproducible. ``script`` names the fate of the next requests in order
    (``"ok"``, ``"5xx"``, ``"429"``, ``"expire"``, ``"drop"``, ``"fail_after_write"``) before
    any random draw.

    Two switches make the sandbox behave like a server that does not take what casebridge's
    one-batch handoff relies on: ``ignore_client_ids`` gives every created record an Id of
    its own (the ``Id`` a POST carries is dropped), ``refuse_atomicity_groups`` answers 400
    to a ``$batch`` that uses ``atomicityGroup``.
    """

    latency_ms: int = 0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after_s: int = 1
    expire_rate: float = 0.0
    drop_rate: float = 0.0
    fail_after_write_rate: float = 0.0
    fail_after_write_mode: str = "500"
    seed: int = 0
    script: tuple[str, ...] = ()
    ignore_client_ids: bool = False
    refuse_atomicity_groups: bool = False

    def __post_init__(self) -> None:
        for name in ("error_rate", "throttle_rate", "expire_rate", "drop_rate",
                     "fail_after_write_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must not be negative, got {self.latency_ms!r}")
        if self.retry_after_s < 0:
            raise ValueError(f"retry_after_s must not be negative, got {self.retry_after_s!r}")
        if self.fail_after_write_mode not in ("500", "drop"):
            raise ValueError(
                f"fail_after_write_mode must be '500' or 'drop', got {self.fail_after_write_mode!r}"
            )
        for step in self.script:
            if step not in FAULT_STEPS:
                raise ValueError(f"unknown fault script step {step!r}; use one of {FAULT_STEPS}")


FAULT_STEPS = ("ok", "5xx", "429", "expire", "drop", "fail_after_write")

SUPERVISOR_CONTACT_ID = "410006e1-ca4e-4502-a9ec-e54d922d2c00"


def _default_users() -> tuple[SandboxUser, ...]:
    return (SandboxUser("Supervisor", Secret("Supervisor", "sandbox default"),
                        SUPERVISOR_CONTACT_ID),)


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    """Everything :func:`create_sandbox_app` needs.

    ``path_prefix`` is ``"/0"`` for classic hosts (OData at ``/0/odata``, REST services at
    ``/0/rest``) and ``""`` for .NET 8 hosts (``/odata``, ``/rest``). ``oauth_user`` is the
    user a client-credentials token acts as. ``database`` is a SQLite file that keeps data
    across restarts, or None to keep everything in memory. ``processes`` lists the business
    processes that post to ``webhook_url``: ``new_activity``, ``case_closed`` and
    ``case_status_changed``.
    """

    users: tuple[SandboxUser, ...] = field(default_factory=_default_users)
    oauth_client_id: str = "casebridge-sandbox"
    oauth_client_secret: Secret = field(default_factory=lambda: Secret("sandbox-secret",
                                                                        "sandbox default"))
    oauth_user: str = "Supervisor"
    token_lifetime_s: int = 3600
    token_path: str = "/connect/token"  # noqa: S105 (a URL path, not a secret)
    path_prefix: str = "/0"
    webhook_url: str | None = None
    webhook_secret: Secret | None = None
    webhook_header: str = "X-Casebridge-Secret"
    webhook_attempts: int = 4
    webhook_backoff_s: float = 0.5
    processes: frozenset[str] = DEFAULT_PROCESSES
    faults: FaultSettings = field(default_factory=FaultSettings)
    database: Path | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.path_prefix not in ("", "/0") and (
            not self.path_prefix.startswith("/") or self.path_prefix.endswith("/")
        ):
            raise ValueError(f"path_prefix must be '' or start with '/' and not end with it, "
                             f"got {self.path_prefix!r}")
        if not self.token_path.startswith("/"):
            raise ValueError(f"token_path must start with '/', got {self.token_path!r}")
        if self.token_lifetime_s <= 0:
            raise ValueError(f"token_lifetime_s must be positive, got {self.token_lifetime_s!r}")
        if self.webhook_attempts < 1:
            raise ValueError(f"webhook_attempts must be at least 1, got {self.webhook_attempts!r}")
        unknown = self.processes - KNOWN_PROCESSES
        if unknown:
            raise ValueError(f"unknown business processes {sorted(unknown)}; "
                             f"use {sorted(KNOWN_PROCESSES)}")
        if not any(u.name == self.oauth_user for u in self.users):
            raise ValueError(f"oauth_user {self.oauth_user!r} is not one of the users")

    @property
    def odata_root(self) -> str:
        return f"{self.path_prefix}/odata"

    @property
    def rest_root(self) -> str:
        return f"{self.path_prefix}/rest"
