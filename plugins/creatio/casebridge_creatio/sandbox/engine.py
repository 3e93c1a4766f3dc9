"""The OData 4 service itself, free of HTTP: one request in (method, resource path relative
to the OData root, query options, JSON body, acting contact), one :class:`Reply` out.

Both the HTTP routes and ``$batch`` call :meth:`ODataEngine.handle`. Business-process events
raised by a write are queued in ``pending_events`` for the caller to publish once the write
is committed.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import quoteattr

from casebridge.plugin import JsonInputError
from casebridge.plugin import read_json as loads

from . import seed
from .candidates import candidate_ids
from .defaults import fill_defaults
from .errors import ODataError
from .query import (
    QueryError,
    bind_filter,
    bind_orderby,
    evaluate,
    parse_expand,
    parse_filter,
    parse_orderby,
    parse_select,
    sort_rows,
)
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
    now_text,
    parse_datetime,
)
from .store import Store

_RESOURCE_RE = re.compile(
    r"(?P<entity>[A-Za-z_]\w*)(?:\((?P<key>[^)]*)\))?(?:/(?P<prop>\$?[A-Za-z_]\w*))?"
)
_QUERY_OPTIONS = frozenset({"$filter", "$select", "$expand", "$orderby", "$top", "$skip",
                            "$count", "$format"})
_SYSTEM_COLUMNS = frozenset({"ModifiedOn", "ModifiedById"})
_COMMUNICATION_COLUMNS = {"Email": seed.COMMUNICATION_EMAIL,
                          "MobilePhone": seed.COMMUNICATION_MOBILE,
                          "Phone": seed.COMMUNICATION_PHONE}


@dataclass(slots=True)
class Reply:
    """``body`` is JSON-able data, ``bytes`` (raw content) or None (no content)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(exc: ODataError) -> Reply:
    return Reply(exc.status, exc.body())


class ODataEngine:
    """Executes OData requests against a :class:`Store`. ``service_root`` is the absolute URL
    of the OData root, used in ``@odata.context``."""

    def __init__(self, store: Store, *, uuid_source: Any = None) -> None:
        self.store = store
        self.pending_events: list[dict[str, Any]] = []
        self._new_id = uuid_source or (lambda: str(uuid.uuid4()))

    # --- entry point ---

    def handle(self, method: str, resource: str, query: Mapping[str, str], body: bytes | None,
               *, actor: str, service_root: str) -> Reply:
        try:
            return self._dispatch(method.upper(), resource, query, body, actor, service_root)
        except ODataError as exc:
            return error_reply(exc)
        except QueryError as exc:
            return error_reply(ODataError(400, str(exc), exception_type="Microsoft.OData."
                                          "ODataException"))

    def _dispatch(self, method: str, resource: str, query: Mapping[str, str],
                  body: bytes | None, actor: str, root: str) -> Reply:
        resource = resource.strip("/")
        if resource == "":
            if method != "GET":
                raise ODataError(405, f"The HTTP method '{method}' is not allowed here.")
            return Reply(200, {"@odata.context": f"{root}/$metadata",
                               "value": [{"name": n, "kind": "EntitySet", "url": n}
                                         for n in ENTITIES]})
        if resource == "$metadata":
            return Reply(200, metadata_xml().encode(), {"Content-Type": "application/xml"})
        m = _RESOURCE_RE.fullmatch(resource)
        if m is None:
            raise ODataError(404, f"No HTTP resource was found that matches the request URI "
                             f"'{resource}'.")
        entity = ENTITIES.get(m.group("entity"))
        if entity is None:
            raise ODataError(404, f"Resource not found for the segment '{m.group('entity')}'.")
        raw_key, prop = m.group("key"), m.group("prop")
        for name in query:
            if name.startswith("$") and name not in _QUERY_OPTIONS:
                raise ODataError(400, f"The query parameter '{name}' is not supported.")
        if raw_key is None:
            if prop == "$count" and method == "GET":
                count = len(self._filtered(entity, query))
                return Reply(200, str(count).encode(), {"Content-Type": "text/plain"})
            if prop is not None:
                raise ODataError(404, f"Resource not found for the segment '{prop}'.")
            if method == "GET":
                return self._get_collection(entity, query, root)
            if method == "POST":
                return self._post(entity, _json_object(body), actor, root)
            raise ODataError(405, f"The HTTP method '{method}' is not allowed on the entity set "
                             f"'{entity.name}'.")
        key = _parse_key(raw_key)
        if method == "GET":
            return self._get_one(entity, key, prop, query, root)
        if prop is not None:
            raise ODataError(405, f"The HTTP method '{method}' is not allowed on a property.")
        if method == "PATCH":
            return self._patch(entity, key, _json_object(body), actor)
        if method == "DELETE":
            return self._delete(entity, key)
        raise ODataError(405, f"The HTTP method '{method}' is not allowed on an entity.")

    # --- reading ---

    def _resolve(self, entity: str, row_id: str) -> dict[str, Any] | None:
        return self.store.get(entity, row_id) if entity in ENTITIES else None

    def _filtered(self, entity: Entity, query: Mapping[str, str]) -> list[dict[str, Any]]:
        text = query.get("$filter")
        if text is None:
            return self.store.rows(entity.name)
        expr = parse_filter(text)
        bind_filter(expr, entity)
        ids = candidate_ids(expr, entity, self.store)
        rows = (self.store.rows(entity.name) if ids is None
                else self.store.rows_by_ids(entity.name, ids))
        return [r for r in rows if evaluate(expr, r, entity, self._resolve) is True]

    def _get_collection(self, entity: Entity, query: Mapping[str, str], root: str) -> Reply:
        rows = self._filtered(entity, query)
        total = len(rows)
        if "$orderby" in query:
            keys = parse_orderby(query["$orderby"])
            bind_orderby(keys, entity)
            rows = sort_rows(rows, keys, entity, self._resolve)
        skip = _non_negative(query, "$skip")
        top = _non_negative(query, "$top")
        if skip:
            rows = rows[skip:]
        if top is not None:
            rows = rows[:top]
        select, expand = self._shape(entity, query)
        body: dict[str, Any] = {"@odata.context": _context(root, entity, select)}
        count = query.get("$count", "false").lower()
        if count not in ("true", "false"):
            raise ODataError(400, f"'{query['$count']}' is not a valid value for $count: use "
                             "true or false.")
        if count == "true":
            body["@odata.count"] = total
        body["value"] = [self.render(entity, r, select, expand) for r in rows]
        return Reply(200, body)

    def _get_one(self, entity: Entity, key: str, prop: str | None, query: Mapping[str, str],
                 root: str) -> Reply:
        row = self._require(entity, key)
        if prop is not None:
            column = entity.columns.get(prop)
            if column is None:
                raise ODataError(404, f"Resource not found for the segment '{prop}'.")
            if column.type == BINARY:
                return Reply(200, self.store.blob(key) or b"",
                             {"Content-Type": "application/octet-stream"})
            return Reply(200, {"@odata.context": f"{root}/$metadata#{entity.name}({key})/{prop}",
                               "value": self.render(entity, row, [prop], {})[prop]})
        select, expand = self._shape(entity, query)
        body = {"@odata.context": _context(root, entity, select, single=True)}
        body.update(self.render(entity, row, select, expand))
        return Reply(200, body)

    def _shape(self, entity: Entity, query: Mapping[str, str]
               ) -> tuple[list[str] | None, dict[str, list[str] | None]]:
        select = parse_select(query["$select"]) if "$select" in query else None
        for name in select or []:
            if name not in entity.columns:
                raise ODataError(400, f"Could not find a property named '{name}' on type "
                                 f"'{entity.type_name}'.")
        expand = parse_expand(query["$expand"]) if "$expand" in query else {}
        for nav, nav_select in expand.items():
            column = entity.navs.get(nav)
            if column is None or column.ref not in ENTITIES:
                raise ODataError(400, f"Could not find a navigation property named '{nav}' on "
                                 f"type '{entity.type_name}'.")
            for name in nav_select or []:
                if name not in ENTITIES[column.ref].columns:
                    raise ODataError(400, f"Could not find a property named '{name}' on type "
                                     f"'{ENTITIES[column.ref].type_name}'.")
        return select, expand

    def render(self, entity: Entity, row: dict[str, Any], select: list[str] | None = None,
               expand: Mapping[str, list[str] | None] | None = None) -> dict[str, Any]:
        """A stored row as it goes on the wire: empty lookups as the empty GUID, empty dates
        as ``0001-01-01T00:00:00Z``, binary columns left out, expanded lookups nested."""
        out: dict[str, Any] = {}
        for name, column in entity.columns.items():
            if column.type == BINARY or (select is not None and name not in select):
                continue
            out[name] = _wire_value(column.type, row.get(name))
        for nav, nav_select in (expand or {}).items():
            column = entity.navs[nav]
            assert column.ref is not None
            target = row.get(column.name)
            ref_row = self.store.get(column.ref, target) if target else None
            out[nav] = (self.render(ENTITIES[column.ref], ref_row, nav_select)
                        if ref_row is not None else None)
        return out

    def _require(self, entity: Entity, key: str) -> dict[str, Any]:
        row = self.store.get(entity.name, key)
        if row is None:
            raise ODataError(404, f"The {entity.name} with Id '{key}' was not found.",
                             exception_type="Terrasoft.Common.ItemNotFoundException")
        return row

    # --- writing ---

    def _post(self, entity: Entity, values: dict[str, Any], actor: str, root: str) -> Reply:
        row = self._coerce(entity, values)
        row_id = row.get("Id") or self._new_id()
        row["Id"] = row_id
        if self.store.get(entity.name, row_id) is not None:
            raise ODataError(
                500,
                f"Violation of PRIMARY KEY constraint 'PK{entity.name}Id'. Cannot insert "
                f"duplicate key in object 'dbo.{entity.name}'. The duplicate key value is "
                f"({row_id}).",
                code="DuplicateKey", exception_type="System.Data.SqlClient.SqlException",
            )
        now = now_text()
        full: dict[str, Any] = dict.fromkeys(entity.columns)
        full.update({"CreatedOn": now, "CreatedById": actor})
        full.update(row)
        full.update({"ModifiedOn": now, "ModifiedById": actor})
        self._fill_new(entity, full, set(values), now, actor)
        self._check_required(entity, full)
        self._check_references(entity, full, "INSERT")
        self.store.put(entity.name, full)
        self._after_write(entity, full, None, actor)
        body = {"@odata.context": _context(root, entity, None, single=True)}
        body.update(self.render(entity, full))
        return Reply(201, body, {"Location": f"{root}/{entity.name}({row_id})"})

    def _patch(self, entity: Entity, key: str, values: dict[str, Any], actor: str) -> Reply:
        old = self._require(entity, key)
        changes = self._coerce(entity, values)
        if "Id" in changes and changes["Id"] != old["Id"]:
            raise ODataError(400, "The key property 'Id' cannot be changed.")
        if entity.name == "Case":
            status = self.store.get("CaseStatus", old.get("StatusId") or "")
            if status is not None and status.get("IsFinal"):
                raise ODataError(
                    403,
                    f"Case {old.get('Number')} is in the final status '{status['Name']}' and "
                    "cannot be changed.",
                    code="CaseIsClosed", exception_type="Terrasoft.Common.SecurityException",
                )
        now = now_text()
        new = {**old, **changes, "ModifiedOn": now, "ModifiedById": actor}
        self._apply_defaults(entity, new, old, now)
        self._check_required(entity, new)
        self._check_references(entity, new, "UPDATE")
        self.store.put(entity.name, new)
        self._after_write(entity, new, old, actor)
        return Reply(204)

    def _delete(self, entity: Entity, key: str) -> Reply:
        self._require(entity, key)
        for other in ENTITIES.values():
            for column in other.columns.values():
                if column.ref != entity.name or column.name in ("CreatedById", "ModifiedById"):
                    continue
                if any(r.get(column.name) == key.lower() for r in self.store.rows(other.name)):
                    raise ODataError(
                        500,
                        f"The DELETE statement conflicted with the REFERENCE constraint "
                        f"'FK{other.name}{column.name}'. The conflict occurred in table "
                        f"'dbo.{other.name}', column '{column.name}'.",
                        code="ReferenceConstraint",
                        exception_type="System.Data.SqlClient.SqlException",
                    )
        self.store.delete(entity.name, key)
        return Reply(204)

    def _coerce(self, entity: Entity, values: dict[str, Any]) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for name, value in values.items():
            if "@odata." in name or name.startswith("@"):
                continue
            column = entity.columns.get(name)
            if column is None:
                raise ODataError(400, f"The property '{name}' does not exist on type "
                                 f"'{entity.type_name}'. Make sure to only use property names "
                                 "that are defined by the type.")
            if name in _SYSTEM_COLUMNS:
                continue
            row[name] = _coerce_value(entity, name, column.type, value)
        return row

    def _fill_new(self, entity: Entity, row: dict[str, Any], given: set[str], now: str,
                  actor: str) -> None:
        """Creatio's defaults for the columns an insert left out, then empty text, false and
        zero for the remaining scalar columns (lookups and dates stay empty)."""
        fill_defaults(entity.name, row, given, now=now, actor=actor,
                      next_case_number=self._next_case_number)
        for name, column in entity.columns.items():
            if row[name] is None and column.type in (TEXT, BOOL, INT, DECIMAL):
                row[name] = {TEXT: "", BOOL: False, INT: 0, DECIMAL: 0}[column.type]
        self._apply_defaults(entity, row, None, now)

    def _next_case_number(self) -> str:
        return f"SR{self.store.next_value('CaseNumber'):08d}"

    def _apply_defaults(self, entity: Entity, row: dict[str, Any],
                        old: dict[str, Any] | None, now: str) -> None:
        if entity.name == "Case":
            status = self.store.get("CaseStatus", row.get("StatusId") or "")
            changed = old is None or old.get("StatusId") != row.get("StatusId")
            if status is not None and changed:
                if status.get("IsFinal") and not row.get("ClosureDate"):
                    row["ClosureDate"] = now
                if status.get("IsResolved") and not row.get("SolutionDate"):
                    row["SolutionDate"] = now
        elif entity.name == "ContactCommunication":
            number = row.get("Number") or ""
            is_email = row.get("CommunicationTypeId") == seed.COMMUNICATION_EMAIL
            digits = "" if is_email else "".join(c for c in number if c.isdigit())
            row["SearchNumber"] = digits[::-1]

    def _check_required(self, entity: Entity, row: dict[str, Any]) -> None:
        missing = [n for n in sorted(entity.required) if row.get(n) in (None, "")]
        if missing:
            raise ODataError(400, f"Required column(s) {', '.join(missing)} of "
                             f"'{entity.name}' must have a value.")

    def _check_references(self, entity: Entity, row: dict[str, Any], verb: str) -> None:
        for column in entity.columns.values():
            value = row.get(column.name)
            if column.ref in ENTITIES and value is not None and (
                self.store.get(column.ref, value) is None
                and not (column.ref == entity.name and value == row["Id"])
            ):
                raise ODataError(
                    500,
                    f"The {verb} statement conflicted with the FOREIGN KEY constraint "
                    f"'FK{entity.name}{column.name}'. The conflict occurred in table "
                    f"'dbo.{column.ref}', column 'Id' (value {value}).",
                    code="ForeignKeyConstraint",
                    exception_type="System.Data.SqlClient.SqlException",
                )

    def _after_write(self, entity: Entity, row: dict[str, Any], old: dict[str, Any] | None,
                     actor: str) -> None:
        if entity.name == "Activity" and old is None and row.get("CaseId"):
            self.pending_events.append({"event_type": "new_activity", "caseId": row["CaseId"],
                                        "activityId": row["Id"]})
        elif entity.name == "Case" and old is not None and old["StatusId"] != row["StatusId"]:
            self.pending_events.append({"event_type": "case_status_changed",
                                        "caseId": row["Id"], "statusId": row["StatusId"],
                                        "previousStatusId": old["StatusId"]})
            status = self.store.get("CaseStatus", row["StatusId"] or "")
            if status is not None and status.get("IsFinal"):
                self.pending_events.append({"event_type": "case_closed", "caseId": row["Id"],
                                            "statusId": row["StatusId"]})
        elif entity.name == "Contact":
            self._sync_communications(row, old, actor)

    def _sync_communications(self, row: dict[str, Any], old: dict[str, Any] | None,
                             actor: str) -> None:
        # Creatio keeps a Contact's Email and phones mirrored in ContactCommunication.
        mine = self.store.ids_where("ContactCommunication", "ContactId", row["Id"])
        existing = {(c["CommunicationTypeId"], c["Number"])
                    for c in self.store.rows_by_ids("ContactCommunication", mine)
                    if c["ContactId"] == row["Id"]}
        for column, type_id in _COMMUNICATION_COLUMNS.items():
            number = row.get(column) or ""
            if not number or (old is not None and old.get(column) == number):
                continue
            if (type_id, number) in existing:
                continue
            now = now_text()
            comm = dict.fromkeys(ENTITIES["ContactCommunication"].columns)
            given = {"Id": self._new_id(), "ContactId": row["Id"],
                     "CommunicationTypeId": type_id, "Number": number, "Primary": True}
            comm.update({**given, "CreatedOn": now, "ModifiedOn": now, "CreatedById": actor,
                         "ModifiedById": actor})
            self._fill_new(ENTITIES["ContactCommunication"], comm, set(given), now, actor)
            self.store.put("ContactCommunication", comm)

    # --- seeding ---

    def seed(self, rows: Mapping[str, list[dict[str, Any]]], actor: str) -> None:
        """Insert rows directly (no events, no reference checks), filling default columns."""
        now = now_text()
        for name, items in rows.items():
            entity = ENTITIES[name]
            for item in items:
                full: dict[str, Any] = dict.fromkeys(entity.columns)
                full.update({"CreatedOn": now, "ModifiedOn": now, "CreatedById": actor,
                             "ModifiedById": actor})
                full.update(self._coerce(entity, item))
                self._fill_new(entity, full, set(item), now, actor)
                self.store.put(name, full)
        self.store.forget_journal()


def _json_object(body: bytes | None) -> dict[str, Any]:
    try:
        value = loads(body or b"", what="The request body")
    except JsonInputError as exc:
        raise ODataError(400, f"{exc}.") from None
    if not isinstance(value, dict):
        raise ODataError(400, "The request body must be a JSON object of column values.")
    return value


def _parse_key(raw: str) -> str:
    key = raw.strip()
    if key.startswith("Id="):
        key = key[3:]
    if not is_guid(key):
        raise ODataError(400, f"The key value '{raw}' was not valid for property 'Id' of type "
                         "'Edm.Guid'.")
    return key.lower()


def _non_negative(query: Mapping[str, str], name: str) -> int | None:
    if name not in query:
        return None
    text = query[name]
    if not text.isdigit():
        raise ODataError(400, f"Invalid value '{text}' for {name} query option found. The "
                         f"{name} query option requires a non-negative integer value.")
    return int(text)


def _context(root: str, entity: Entity, select: list[str] | None, *,
             single: bool = False) -> str:
    text = f"{root}/$metadata#{entity.name}"
    if select is not None:
        text += f"({','.join(select)})"
    return text + ("/$entity" if single else "")


def _wire_value(kind: str, value: Any) -> Any:
    if value is None:
        return {GUID: EMPTY_GUID, DATETIME: EMPTY_DATE, TEXT: "", BOOL: False, INT: 0,
                DECIMAL: 0}.get(kind)
    if isinstance(value, Decimal):
        return float(value)
    return value


def _coerce_value(entity: Entity, name: str, kind: str, value: Any) -> Any:
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

