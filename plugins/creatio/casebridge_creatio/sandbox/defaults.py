"""The values Creatio fills in on insert for columns a POST leaves out.

Creatio gives many columns a default in the entity schema (a constant, the current date and
time, the current user's contact, a number from a code mask) and applies it when an insert
does not name the column. A column is refused as missing ("Required column(s) ... must have a
value") only when it is required AND still empty after the defaults: required columns with a
default can simply be left out, as public clients such as creatio-api-py do.

Where shared/CREATIO.md names the GUIDs they are used; the rest follow Creatio's documented
base-schema defaults and are marked "[Creatio docs]". A column named explicitly in the POST
(even as null or the empty GUID) keeps what was sent, as in Creatio.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import seed


@dataclass(frozen=True, slots=True)
class Default:
    """One column's default: a constant ``value``, or one of the computed kinds below."""

    kind: str
    value: Any = None


NOW = Default("now")
CURRENT_CONTACT = Default("current user's contact")
CASE_NUMBER = Default("case number")


def value(constant: Any) -> Default:
    return Default("value", constant)


# Columns common to every entity (CreatedOn, CreatedById, ...) are filled by the engine.
DEFAULTS: Mapping[str, Mapping[str, Default]] = {
    "Case": {
        # Number from the code mask "SR{0:00000000}" [Creatio docs]; registered now, status
        # New and priority Medium (GUIDs from CREATIO.md).
        "Number": CASE_NUMBER,
        "RegisteredOn": NOW,
        "StatusId": value(seed.STATUS_NEW),
        "PriorityId": value(seed.PRIORITY_MEDIUM),
    },
    "Activity": {
        # A task that has not started, due now, Medium, "To do", owned and authored by the
        # current user (CREATIO.md GUIDs; the owner/author default is [Creatio docs]).
        "StartDate": NOW,
        "DueDate": NOW,
        "StatusId": value(seed.ACTIVITY_STATUS_NOT_STARTED),
        "PriorityId": value(seed.ACTIVITY_PRIORITY_MEDIUM),
        "ActivityCategoryId": value(seed.ACTIVITY_CATEGORY_TODO),
        "TypeId": value(seed.ACTIVITY_TYPE_TASK),
        "OwnerId": CURRENT_CONTACT,
        "AuthorId": CURRENT_CONTACT,
    },
    "Contact": {
        # The current user's contact owns a new contact [Creatio docs].
        "OwnerId": CURRENT_CONTACT,
    },
    "ContactCommunication": {
        # A new communication option is not the primary one unless said [Creatio docs].
        "Primary": value(False),
    },
    "CaseFile": {
        # A file row is a "File" (GUID from CREATIO.md), version 1 [Creatio docs].
        "TypeId": value(seed.FILE_TYPE_FILE),
        "Version": value(1),
    },
    "SysAdminUnit": {
        # A new user or role is active [Creatio docs].
        "Active": value(True),
    },
}


def fill_defaults(
    entity: str,
    row: dict[str, Any],
    given: set[str] | frozenset[str],
    *,
    now: str,
    actor: str,
    next_case_number: Callable[[], str],
) -> None:
    """Fill ``row`` (a new record of ``entity``) with the defaults of every column not in
    ``given`` (the columns the insert named)."""
    for column, default in DEFAULTS.get(entity, {}).items():
        if column in given or column not in row:
            continue
        if default.kind == "value":
            row[column] = default.value
        elif default.kind == NOW.kind:
            row[column] = now
        elif default.kind == CURRENT_CONTACT.kind:
            row[column] = actor
        elif default.kind == CASE_NUMBER.kind:
            row[column] = next_case_number()
