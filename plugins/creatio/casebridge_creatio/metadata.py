"""Creatio's ``$metadata`` (an OData 4 CSDL document) read into what the bridge checks
against: each entity's columns with their types, and which entity each lookup column
points at. Pure parsing, no I/O.

Lookup targets come from a navigation property's ``ReferentialConstraint`` (``StatusId`` ->
``Status`` -> ``CaseStatus``), or, when a service leaves the constraint out, from the
convention Creatio follows: the column is the navigation property's name plus ``Id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring


@dataclass(frozen=True, slots=True)
class EntitySchema:
    """One entity type: ``columns`` maps each column to its Edm type (``Edm.Guid``),
    ``lookups`` maps each lookup column to the entity it points at."""

    name: str
    columns: Mapping[str, str]
    lookups: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Metadata:
    """The entity types of a service, by name (``Case``, ``CasePriority``)."""

    entities: Mapping[str, EntitySchema]

    def entity(self, name: str) -> EntitySchema | None:
        return self.entities.get(name)


def _local(tag: str) -> str:
    """An element or type name without its namespace: ``{ns}EntityType`` -> ``EntityType``,
    ``Terrasoft.Configuration.Case`` -> ``Case``."""
    return tag.rsplit("}", 1)[-1].rsplit(".", 1)[-1]


def parse_metadata(document: bytes | str) -> Metadata:
    """Read a CSDL document. Raises ValueError when it is not XML or holds no entity type."""
    try:
        # defusedxml: the document comes from the network; no entity expansion, no DTD
        # fetching.
        root = fromstring(document)
    except (ParseError, DefusedXmlException) as exc:
        raise ValueError(f"$metadata is not XML that can be read safely ({exc})") from None
    entities: dict[str, EntitySchema] = {}
    for node in root.iter():
        if _local(node.tag) != "EntityType" or not node.get("Name"):
            continue
        columns: dict[str, str] = {}
        lookups: dict[str, str] = {}
        navs: list[tuple[str, str, str]] = []
        for child in node:
            kind = _local(child.tag)
            name = child.get("Name") or ""
            if kind == "Property" and name:
                columns[name] = child.get("Type") or ""
            elif kind == "NavigationProperty" and name:
                constraint = next(
                    (c for c in child if _local(c.tag) == "ReferentialConstraint"), None
                )
                column = constraint.get("Property", "") if constraint is not None else ""
                target = child.get("Type") or ""
                if target and not target.startswith("Collection("):  # one-to-many: no lookup
                    navs.append((name, column, _local(target)))
        for name, column, target in navs:
            column = column or f"{name}Id"
            if column in columns:
                lookups[column] = target
        entities[node.get("Name", "")] = EntitySchema(node.get("Name", ""), columns, lookups)
    if not entities:
        raise ValueError("$metadata describes no entity type")
    return Metadata(entities)
