"""``casebridge check`` for the field mapping: every column a rule or a plugin maps onto the
case must exist in Creatio, and every lookup value must name a record.

The mapped fields are what the TOML maps (``PluginContext.mapped_fields``: the
``[[fields.rules]]`` and the ``[[plugins.<name>.fields]]`` entries of the enabled plugins).
Columns are checked against Creatio's ``$metadata``; lookup values by name, as the handoff
resolves them.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

from casebridge.plugin import MappedField

from .lookups import LookupNotFound
from .metadata import Metadata, parse_metadata
from .odata import is_guid
from .operations import CreatioOperations

CASE = "Case"
_GUID_TYPE = "Edm.Guid"


def column_problems(
    metadata: Metadata, fields: Sequence[MappedField], lookup_entities: Mapping[str, str]
) -> tuple[list[str], list[tuple[MappedField, str]]]:
    """What is wrong with ``fields`` by Creatio's ``$metadata`` alone, and the lookup fields
    whose values are still to be looked up, each with its entity.

    ``lookup_entities`` is the plugin's own column -> entity map (built-in Case lookups and
    ``lookup_entities`` from the TOML): the handoff resolves values through it, so a lookup
    column it does not know fails there even when Creatio knows the column.
    """
    case = metadata.entity(CASE)
    if case is None:
        return [f"Creatio's $metadata has no {CASE} entity"], []
    problems: list[str] = []
    lookups: list[tuple[MappedField, str]] = []
    for field in fields:
        column = field.column
        if column not in case.columns:
            close = difflib.get_close_matches(column, list(case.columns), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"{field.where}: Creatio's {CASE} has no column {column!r}{hint}")
            continue
        if field.kind != "lookup":
            # A text value goes in as it is: into a lookup column only a GUID fits.
            guids = field.values and all(is_guid(v.strip()) for v in field.values)
            if case.columns[column] == _GUID_TYPE and not guids:
                problems.append(
                    f"{field.where}: {column} is a lookup column in Creatio; "
                    'give it kind = "lookup" and a display value'
                )
            continue
        entity = lookup_entities.get(column)
        creatio_says = case.lookups.get(column, "")
        if entity is None:
            known = f" (Creatio says it points at {creatio_says})" if creatio_says else ""
            problems.append(
                f"{field.where}: {column}: unknown lookup column; name its entity "
                f"in [plugins.creatio] lookup_entities{known}"
            )
        elif metadata.entity(entity) is None:
            problems.append(f"{field.where}: {column}: Creatio has no entity {entity!r}")
        else:
            lookups.append((field, entity))
    return problems, lookups


async def check_fields(ops: CreatioOperations, fields: Sequence[MappedField]) -> list[str]:
    """Every problem with ``fields`` in this Creatio, each naming the field; [] when none.
    Raises the client's errors when Creatio cannot be read."""
    if not fields:
        return []
    try:
        metadata = parse_metadata(await ops.client.metadata())
    except ValueError as exc:
        return [f"cannot check the mapped fields: {exc}"]
    problems, lookups = column_problems(metadata, fields, ops.lookups.entities)
    for field, entity in lookups:
        for value in field.values:
            if not value.strip():
                continue
            try:
                await ops.lookups.resolve(entity, value)
            except LookupNotFound:
                problems.append(
                    f"{field.where}: {field.column}: Creatio has no {entity} named {value!r}"
                )
    return problems
