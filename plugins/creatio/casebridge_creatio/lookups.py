"""Turning lookup display values ("High", "Email") into Creatio record GUIDs, and knowing
which case statuses count as open. Both ask Creatio once and remember the answer."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import anyio
from casebridge.plugin import PermanentError

from . import odata
from .client import CreatioClient
from .settings import CreatioSettings

log = logging.getLogger("casebridge.creatio")

# The lookup entity behind each Case column the bridge may fill.
CASE_LOOKUPS: Mapping[str, str] = {
    "PriorityId": "CasePriority",
    "CategoryId": "CaseCategory",
    "OriginId": "CaseOrigin",
    "StatusId": "CaseStatus",
    "ServiceItemId": "ServiceItem",
    "ServicePactId": "ServicePact",
    "ClosureCodeId": "ClosureCode",
    "GroupId": "SysAdminUnit",
    "OwnerId": "Contact",
    "ContactId": "Contact",
    "AccountId": "Account",
    "SupportLevelId": "SupportLevel",
}


class LookupNotFound(PermanentError):
    """No record of the lookup entity has the display value asked for."""

    def __init__(self, field: str, entity: str, value: str) -> None:
        self.field = field
        self.entity = entity
        self.value = value
        super().__init__(f"{field}: no {entity} record is named {value!r} in Creatio")


class LookupCache:
    """Resolves display values by ``Name``, asking Creatio once per (entity, value).

    ``extra`` maps more columns to their lookup entities (``[plugins.creatio]
    lookup_entities``) and overrides the built-in Case mapping.
    """

    def __init__(self, client: CreatioClient, extra: Mapping[str, str] | None = None) -> None:
        self._client = client
        self.entities = {**CASE_LOOKUPS, **(extra or {})}
        self._found: dict[tuple[str, str], str] = {}
        self._lock: anyio.Lock | None = None

    def entity_for(self, entity_or_column: str) -> str:
        """The lookup entity for a column name, or the name itself when it is an entity."""
        if entity_or_column in self.entities:
            return self.entities[entity_or_column]
        if entity_or_column.endswith("Id"):
            raise ValueError(
                f"{entity_or_column}: unknown lookup column; name its entity in "
                "[plugins.creatio] lookup_entities"
            )
        return entity_or_column

    async def resolve(self, entity_or_column: str, display_value: str) -> str:
        """The GUID of the record named ``display_value``; a GUID is returned as it is.

        Raises :class:`LookupNotFound` naming the field and the value when nothing matches.
        When several records share the name, the oldest wins (and a warning is logged).
        """
        entity = self.entity_for(entity_or_column)
        value = display_value.strip()
        if odata.is_guid(value):
            return value.lower()
        if not value:
            raise LookupNotFound(entity_or_column, entity, display_value)
        key = (entity, value.casefold())
        if key in self._found:
            return self._found[key]
        if self._lock is None:
            self._lock = anyio.Lock()
        async with self._lock:
            if key not in self._found:
                self._found[key] = await self._ask(entity_or_column, entity, value)
        return self._found[key]

    async def _ask(self, field: str, entity: str, value: str) -> str:
        rows = await self._client.query(
            entity, filter=odata.eq("Name", value), select=["Id", "Name"], top=2
        )
        if not rows:
            raise LookupNotFound(field, entity, value)
        if len(rows) > 1:
            log.warning(
                "%s: several %s records are named %r; using the first", field, entity, value
            )
        return str(rows[0]["Id"]).lower()

    def remember(self, entity: str, display_value: str, record_id: str) -> None:
        """Seed the cache (values known from the settings need no round trip)."""
        self._found[(entity, display_value.strip().casefold())] = odata.Guid(record_id).value


@dataclass(frozen=True, slots=True)
class CaseStatus:
    id: str
    name: str
    is_final: bool
    is_resolved: bool


class StatusCache:
    """Case statuses, loaded once, and which of them count as open for case-append.

    Open means not final (``IsFinal`` false); with ``treat_resolved_as_open`` off, resolved
    statuses are not open either; ``open_status_ids`` in the settings overrides both.
    """

    def __init__(self, client: CreatioClient, settings: CreatioSettings) -> None:
        self._client = client
        self._settings = settings
        self._statuses: dict[str, CaseStatus] | None = None
        self._lock: anyio.Lock | None = None

    async def statuses(self) -> dict[str, CaseStatus]:
        if self._statuses is None:
            if self._lock is None:
                self._lock = anyio.Lock()
            async with self._lock:
                if self._statuses is None:
                    rows = await self._client.query(
                        "CaseStatus", select=["Id", "Name", "IsFinal", "IsResolved"]
                    )
                    self._statuses = {
                        str(r["Id"]).lower(): CaseStatus(
                            id=str(r["Id"]).lower(),
                            name=str(r.get("Name") or ""),
                            is_final=bool(r.get("IsFinal")),
                            is_resolved=bool(r.get("IsResolved")),
                        )
                        for r in rows
                        if r.get("Id")
                    }
        return self._statuses

    def _open(self, status: CaseStatus) -> bool:
        if self._settings.open_status_ids:
            return status.id in {s.lower() for s in self._settings.open_status_ids}
        if status.is_final:
            return False
        return self._settings.treat_resolved_as_open or not status.is_resolved

    async def open_ids(self) -> list[str]:
        """The ids of every open status, in a stable order."""
        statuses = await self.statuses()
        return sorted(s.id for s in statuses.values() if self._open(s))

    async def is_open(self, status_id: str) -> bool:
        """Whether a case with this status is open; an unknown status counts as open,
        since only a final status stops a case from taking more activities."""
        statuses = await self.statuses()
        status = statuses.get(status_id.lower())
        return True if status is None else self._open(status)

    async def name(self, status_id: str) -> str:
        status = (await self.statuses()).get(status_id.lower())
        return status.name if status else status_id
