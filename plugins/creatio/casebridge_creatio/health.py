"""``casebridge check`` for Creatio: sign in, read, and verify every id the settings name.

"Active", or every problem found, each naming the setting: a GUID Creatio does not have, a
lookup name it cannot resolve, a mapped field whose column or value it does not know.
"""

from __future__ import annotations

from collections.abc import Sequence

from casebridge.plugin import CheckResult, MappedField, PermanentError, TransientError

from .fieldcheck import check_fields
from .lookups import LookupNotFound
from .operations import CreatioOperations

__all__ = ["check_operations"]


async def check_operations(
    ops: CreatioOperations, fields: Sequence[MappedField] = ()
) -> CheckResult:
    """Sign in and read, then make sure every GUID and lookup name in the settings exists
    and every mapped field's column and lookup values are Creatio's: "Active", or each
    problem found."""
    result = await ops.client.check(ops.name)
    if not result.ok:
        return result
    settings = ops.settings
    wanted = [
        ("owner_id", "Contact", settings.owner_id),
        ("group_id", "SysAdminUnit", settings.group_id),
        ("priority_id", "CasePriority", settings.priority_id),
        ("new_status_id", "CaseStatus", settings.new_status_id),
        ("resolved_status_id", "CaseStatus", settings.resolved_status_id),
        ("sms_activity_type_id", "ActivityType", settings.sms_activity_type_id),
        *((f"origin_ids.{channel}", "CaseOrigin", guid)
          for channel, guid in sorted(settings.origin_ids.items())),
    ]
    problems: list[str] = []
    try:
        for name, entity, guid in wanted:
            if guid and await ops.client.get(entity, guid, select=["Id"]) is None:
                problems.append(f"{name}: Creatio has no {entity} with Id {guid}")
        for channel, display in sorted(settings.origin_names.items()):
            try:
                await ops.lookups.resolve("CaseOrigin", display)
            except LookupNotFound:
                problems.append(f"origin_names.{channel}: Creatio has no CaseOrigin named "
                                f"{display!r}")
        problems += await check_fields(ops, fields)
    except TransientError as exc:
        return CheckResult(ops.name, False, f"Creatio at {settings.url} stopped answering: {exc}")
    except PermanentError as exc:
        problems.append(str(exc))
    if problems:
        return CheckResult(ops.name, False, "; ".join(problems))
    return CheckResult(ops.name, True, "Active")
