"""The Creatio entities the sandbox serves: their columns, types, lookups and required columns.

"Required" means what it means in Creatio: an insert is refused only when a required column
is still empty after the defaults of :mod:`.defaults` are filled in.

Values are kept in the store in their JSON form (GUIDs lower-case, datetimes as
``YYYY-MM-DDTHH:MM:SS.fffffffZ``); an empty lookup or date is None in the store and shows as
the empty GUID or ``0001-01-01T00:00:00Z`` on the wire, as Creatio's OData 4 does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

EMPTY_GUID = "00000000-0000-0000-0000-000000000000"
EMPTY_DATE = "0001-01-01T00:00:00Z"
NAMESPACE = "Terrasoft.Configuration"

GUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
DATETIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?"
    r"(Z|[+-]\d{2}:\d{2}))?"
)

# Column types, named after the Edm types Creatio reports in $metadata.
GUID = "Edm.Guid"
TEXT = "Edm.String"
BOOL = "Edm.Boolean"
DATETIME = "Edm.DateTimeOffset"
INT = "Edm.Int32"
DECIMAL = "Edm.Decimal"
BINARY = "Edm.Stream"


@dataclass(frozen=True, slots=True)
class Column:
    """One column. A lookup column (``StatusId``) names the entity it points at (``ref``) and
    the navigation property that reaches it (``nav``, ``Status``)."""

    name: str
    type: str
    ref: str | None = None
    nav: str | None = None


@dataclass(frozen=True, slots=True)
class Entity:
    name: str
    columns: dict[str, Column]
    required: frozenset[str] = frozenset()
    navs: dict[str, Column] = field(default_factory=dict)

    @property
    def type_name(self) -> str:
        return f"{NAMESPACE}.{self.name}"


def _lookup(name: str, ref: str, nav: str | None = None) -> Column:
    return Column(name, GUID, ref=ref, nav=nav or name.removesuffix("Id"))


def _entity(name: str, columns: list[Column], required: tuple[str, ...] = ()) -> Entity:
    common = [
        Column("Id", GUID),
        Column("CreatedOn", DATETIME),
        _lookup("CreatedById", "Contact"),
        Column("ModifiedOn", DATETIME),
        _lookup("ModifiedById", "Contact"),
    ]
    cols = {c.name: c for c in common + columns}
    navs = {c.nav: c for c in cols.values() if c.nav}
    return Entity(name, cols, frozenset(required), navs)


def _lookup_entity(name: str, extra: list[Column] | None = None) -> Entity:
    return _entity(name, [Column("Name", TEXT), Column("Description", TEXT), *(extra or [])],
                   ("Name",))


ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in [
        _entity("Case", [
            Column("Number", TEXT), Column("Subject", TEXT), Column("Symptoms", TEXT),
            Column("RegisteredOn", DATETIME), _lookup("StatusId", "CaseStatus"),
            _lookup("PriorityId", "CasePriority"), _lookup("OriginId", "CaseOrigin"),
            _lookup("CategoryId", "CaseCategory"), _lookup("ContactId", "Contact"),
            Column("AccountId", GUID), _lookup("OwnerId", "Contact"),
            _lookup("GroupId", "SysAdminUnit"), Column("ServiceItemId", GUID),
            Column("ClosureDate", DATETIME), Column("ClosureCodeId", GUID),
            Column("SolutionDate", DATETIME), Column("Solution", TEXT), Column("Notes", TEXT),
        ]),
        _lookup_entity("CaseStatus", [Column("IsFinal", BOOL), Column("IsResolved", BOOL),
                                      Column("IsPaused", BOOL)]),
        _lookup_entity("CaseOrigin"),
        _lookup_entity("CasePriority"),
        _lookup_entity("CaseCategory"),
        _entity("Activity", [
            Column("Title", TEXT), Column("StartDate", DATETIME), Column("DueDate", DATETIME),
            _lookup("PriorityId", "ActivityPriority"),
            _lookup("ActivityCategoryId", "ActivityCategory"),
            _lookup("StatusId", "ActivityStatus"), _lookup("TypeId", "ActivityType"),
            Column("Body", TEXT), Column("IsHtmlBody", BOOL), Column("Sender", TEXT),
            Column("Recepient", TEXT), Column("CopyRecepient", TEXT),
            Column("BlindCopyRecepient", TEXT),
            _lookup("MessageTypeId", "EmailType", "MessageType"),
            _lookup("CaseId", "Case"), _lookup("ContactId", "Contact"),
            _lookup("OwnerId", "Contact"), _lookup("AuthorId", "Contact"),
            Column("DetailedResult", TEXT),
        ], ("Title", "DueDate", "StatusId")),
        _lookup_entity("ActivityType"),
        _lookup_entity("ActivityCategory"),
        _lookup_entity("ActivityStatus", [Column("Finish", BOOL)]),
        _lookup_entity("ActivityPriority"),
        _lookup_entity("EmailType"),
        _entity("Contact", [
            Column("Name", TEXT), Column("Email", TEXT), Column("MobilePhone", TEXT),
            Column("Phone", TEXT), Column("AccountId", GUID), Column("JobTitle", TEXT),
            _lookup("OwnerId", "Contact"),
        ], ("Name",)),
        _entity("ContactCommunication", [
            _lookup("ContactId", "Contact"), _lookup("CommunicationTypeId", "CommunicationType"),
            Column("Number", TEXT), Column("SearchNumber", TEXT), Column("Primary", BOOL),
        ], ("ContactId", "CommunicationTypeId")),
        _lookup_entity("CommunicationType"),
        _entity("CaseFile", [
            Column("Name", TEXT), _lookup("CaseId", "Case"), Column("Size", INT),
            Column("TotalSize", INT), _lookup("TypeId", "FileType"), Column("Data", BINARY),
            Column("Version", INT),
        ], ("Name",)),
        _lookup_entity("FileType"),
        _entity("SysAdminUnit", [
            Column("Name", TEXT), _lookup("ContactId", "Contact"),
            Column("SysAdminUnitTypeValue", INT), Column("Active", BOOL),
        ], ("Name",)),
    ]
}


def now_text() -> str:
    """The current time as Creatio writes it: seven fractional digits and ``Z``."""
    return format_datetime(datetime.now(UTC))


def format_datetime(value: datetime) -> str:
    value = value.astimezone(UTC)
    return (f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:"
            f"{value.minute:02d}:{value.second:02d}.{value.microsecond:06d}0Z")


def parse_datetime(text: str) -> datetime | None:
    """An ISO datetime (``Z`` or an offset; date alone means midnight UTC), or None."""
    m = DATETIME_RE.fullmatch(text)
    if not m:
        return None
    year, month, day, hour, minute, second, frac, zone = m.groups()
    if hour is not None and zone is None:
        return None
    try:
        micro = int((frac or "0").ljust(7, "0")[:6])
        value = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                         int(second or 0), micro, tzinfo=UTC)
        if zone and zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            offset = sign * (int(zone[1:3]) * 60 + int(zone[4:6]))
            value = value - timedelta(minutes=offset)
    except ValueError:
        return None
    return value


def is_guid(text: str) -> bool:
    return GUID_RE.fullmatch(text) is not None
