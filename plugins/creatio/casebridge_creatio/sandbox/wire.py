"""How the sandbox's rows and requests look on the wire: request bodies and keys, query
option numbers, the OData context URL, values as JSON carries them, and ``$metadata``.

Pure: no I/O, no state.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import quoteattr

from casebridge.plugin import JsonInputError
from casebridge.plugin import read_json as loads

from .errors import ODataError
from .schema import (
    BINARY,
    BOOL,
    DATETIME,
    DECIMAL,
    EMPTY_DATE,
    EMPTY_GUID,
    ENTITIES,
    GUID,
    INT,
    TEXT,
    Entity,
    format_datetime,
    is_guid,
    parse_datetime,
)


def json_object(body: bytes | None) -> dict[str, Any]:
    try:
        value = loads(body or b"", what="The request body")
    except JsonInputError as exc:
        raise ODataError(400, f"{exc}.") from None
    if not isinstance(value, dict):
        raise ODataError(400, "The request body must be a JSON object of column values.")
    return value


def parse_key(raw: str) -> str:
    key = raw.strip()
    if key.startswith("Id="):
        key = key[3:]
    if not is_guid(key):
        raise ODataError(400, f"The key value '{raw}' was not valid for property 'Id' of type "
                         "'Edm.Guid'.")
    return key.lower()


def non_negative(query: Mapping[str, str], name: str) -> int | None:
    if name not in query:
        return None
    text = query[name]
    if not text.isdigit():
        raise ODataError(400, f"Invalid value '{text}' for {name} query option found. The "
                         f"{name} query option requires a non-negative integer value.")
    return int(text)


def context_url(root: str, entity: Entity, select: list[str] | None, *,
             single: bool = False) -> str:
    text = f"{root}/$metadata#{entity.name}"
    if select is not None:
        text += f"({','.join(select)})"
    return text + ("/$entity" if single else "")


def wire_value(kind: str, value: Any) -> Any:
    if value is None:
        return {GUID: EMPTY_GUID, DATETIME: EMPTY_DATE, TEXT: "", BOOL: False, INT: 0,
                DECIMAL: 0}.get(kind)
    if isinstance(value, Decimal):
        return float(value)
    return value


def coerce_value(entity: Entity, name: str, kind: str, value: Any) -> Any:
    def bad() -> ODataError:
        shown = json.dumps(value)[:60]
        return ODataError(400, f"Cannot convert the literal {shown} to the expected type "
                          f"'{kind}' of property '{name}' on type '{entity.type_name}'.")

    if kind == BINARY:
        raise ODataError(400, f"The property '{name}' is a stream: upload its content with "
                         "FileApiService.")
    if value is None:
        return None
    if kind == GUID:
        if not isinstance(value, str) or not is_guid(value):
            raise bad()
        lowered = value.lower()
        return None if lowered == EMPTY_GUID else lowered
    if kind == TEXT:
        if not isinstance(value, str):
            raise bad()
        return value
    if kind == BOOL:
        if not isinstance(value, bool):
            raise bad()
        return value
    if kind == DATETIME:
        if not isinstance(value, str):
            raise bad()
        parsed = parse_datetime(value)
        if parsed is None:
            raise bad()
        if parsed.year == 1:
            return None
        return format_datetime(parsed)
    if kind == INT:
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > 2**31 - 1:
            raise bad()
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad()
    return value


def metadata_xml() -> str:
    """A CSDL document describing the served entities (enough for tools that read it)."""
    lines = ['<?xml version="1.0" encoding="utf-8"?>',
             '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
             "<edmx:DataServices>",
             '<Schema Namespace="Terrasoft.Configuration" '
             'xmlns="http://docs.oasis-open.org/odata/ns/edm">']
    for entity in ENTITIES.values():
        lines.append(f"<EntityType Name={quoteattr(entity.name)}>")
        lines.append('<Key><PropertyRef Name="Id"/></Key>')
        for column in entity.columns.values():
            nullable = "false" if column.name == "Id" else "true"
            lines.append(f"<Property Name={quoteattr(column.name)} Type={quoteattr(column.type)} "
                         f'Nullable="{nullable}"/>')
        for nav, column in entity.navs.items():
            # The constraint names the lookup column behind the navigation property, so a
            # client can tell which entity a column such as PriorityId points at.
            lines.append(f"<NavigationProperty Name={quoteattr(nav)} "
                         f"Type={quoteattr('Terrasoft.Configuration.' + (column.ref or ''))}>"
                         f"<ReferentialConstraint Property={quoteattr(column.name)} "
                         'ReferencedProperty="Id"/></NavigationProperty>')
        lines.append("</EntityType>")
    lines.append('<EntityContainer Name="Default">')
    lines += [f"<EntitySet Name={quoteattr(n)} EntityType="
              f"{quoteattr('Terrasoft.Configuration.' + n)}/>" for n in ENTITIES]
    lines += ["</EntityContainer>", "</Schema>", "</edmx:DataServices>", "</edmx:Edmx>"]
    return "\n".join(lines)

