"""The OData 4 service itself, free of HTTP: one request in (method, resource path relative
to the OData root, query options, JSON body, acting contact), one :class:`Reply` out.

Both the HTTP routes and ``$batch`` call :meth:`ODataEngine.handle`. Business-process events
raised by a write are queued in ``pending_events`` for the caller to publish once the write
is committed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import seed
from .candidates import candidate_ids
from .defaults import fill_defaults
from .errors import ODataError
from .evaluate import bind_filter, bind_orderby, evaluate, sort_rows
from .query import QueryError, parse_expand, parse_filter, parse_orderby, parse_select
from .schema import (
    BINARY,
    BOOL,
    DECIMAL,
    ENTITIES,
    INT,
    TEXT,
    Entity,
    now_text,
)
from .store import Store
from .wire import (
    coerce_value,
    context_url,
    json_object,
    metadata_xml,
    non_negative,
    parse_key,
    wire_value,
)

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
                return self._post(entity, json_object(body), actor, root)
            raise ODataError(405, f"The HTTP method '{method}' is not allowed on the entity set "
                             f"'{entity.name}'.")
        key = parse_key(raw_key)
        if method == "GET":
            return self._get_one(entity, key, prop, query, root)
        if prop is not None:
            raise ODataError(405, f"The HTTP method '{method}' is not allowed on a property.")
        if method == "PATCH":
            return self._patch(entity, key, json_object(body), actor)
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
        skip = non_negative(query, "$skip")
        top = non_negative(query, "$top")
        if skip:
            rows = rows[skip:]
        if top is not None:
            rows = rows[:top]
        select, expand = self._shape(entity, query)
        body: dict[str, Any] = {"@odata.context": context_url(root, entity, select)}
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
        body = {"@odata.context": context_url(root, entity, select, single=True)}
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
            out[name] = wire_value(column.type, row.get(name))
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
        body = {"@odata.context": context_url(root, entity, None, single=True)}
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
            row[name] = coerce_value(entity, name, column.type, value)
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
