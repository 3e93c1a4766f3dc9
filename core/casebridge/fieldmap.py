"""The case fields the TOML maps: what a CRM plugin's ``check`` verifies against its CRM.

Two sources, in this order: the ``[[fields.rules]]`` the core applies itself, and the
``[[plugins.<name>.fields]]`` entries of the enabled plugins (the AI plugin's fields; any
plugin that declares fields the same way, with ``column``, ``kind`` and ``allowed``, is
included). Pure: reads the loaded configuration, nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Config

__all__ = ["MappedField", "mapped_fields"]


@dataclass(frozen=True, slots=True)
class MappedField:
    """One column something maps onto the case. ``kind`` is "text" or "lookup";
    ``values`` the values it may take (a rule's one value, a plugin's ``allowed``; empty
    when any); ``where`` names it in the TOML (``fields.rules[0]``)."""

    column: str
    kind: str
    values: tuple[str, ...]
    where: str


def mapped_fields(config: Config) -> list[MappedField]:
    """Every field ``config`` maps onto the case, rules first, then each enabled plugin's."""
    found = [
        MappedField(rule.column, rule.kind, (rule.value,), f"fields.rules[{n}]")
        for n, rule in enumerate(config.fields.rules)
    ]
    for name in config.enabled:
        table: Mapping[str, Any] = config.plugin_tables.get(name) or {}
        entries = table.get("fields")
        if not isinstance(entries, list):
            continue
        for n, entry in enumerate(entries):
            if isinstance(entry, Mapping) and isinstance(entry.get("column"), str):
                allowed = entry.get("allowed")
                values = tuple(str(v) for v in allowed) if isinstance(allowed, list) else ()
                kind = str(entry.get("kind") or "text")
                found.append(MappedField(entry["column"], kind, values,
                                         f"plugins.{name}.fields[{n}]"))
    return found
