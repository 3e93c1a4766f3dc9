"""What casebridge does in Creatio: contacts, cases, activities, attachments, replies.

Every record the bridge writes carries a client-chosen Id (the request's key), so a retried
write is recognised instead of repeated, and a case and its activities can go in one
``$batch``. Lookups resolve display values to GUIDs through :class:`LookupCache`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from casebridge.plugin import (
    ActivityRef,
    ActivityRequest,
    AmbiguousWriteError,
    AttachmentRequest,
    Author,
    CaseRef,
    CaseRequest,
    Contact,
)

from . import odata
from .client import BatchRequest, CreatioClient, CreatioError
from .contacts import clip, contact_records, national, phone_matches
from .files import upload_case_file
from .lookups import LookupCache, LookupNotFound, StatusCache
from .odata import Guid
from .refusals import add_left_empty, left_out_line, refused_column
from .settings import (
    ACTIVITY_CATEGORY_EMAIL,
    ACTIVITY_CATEGORY_TODO,
    ACTIVITY_PRIORITY_MEDIUM,
    ACTIVITY_STATUS_COMPLETED,
    ACTIVITY_TYPE_EMAIL,
    DEFAULT_NAME,
    MESSAGE_TYPE_INCOMING,
    MESSAGE_TYPE_OUTGOING,
    CreatioSettings,
)

log = logging.getLogger("casebridge.creatio")

MARKER_PREFIX = "casebridge:"
_TITLE_MAX = 500
# Ids per "Id eq .. or Id eq .." query, to keep URLs well under common limits.
_IDS_PER_QUERY = 40
_PHONE_CANDIDATES = 50


# -- pure helpers ------------------------------------------------------------------------------


def marker(key: str) -> str:
    """What the bridge writes into ``marker_column`` of its own activities."""
    return f"{MARKER_PREFIX}{key}"


def _clip(text: str, limit: int = _TITLE_MAX) -> str:
    return clip(text, limit)


# -- operations --------------------------------------------------------------------------------


class CreatioOperations:
    """casebridge's CRM operations on one Creatio instance (see the hook contract).
    ``name`` is the plugin's name (its context's): the CRM the references it returns name."""

    def __init__(
        self, client: CreatioClient, settings: CreatioSettings, name: str = DEFAULT_NAME
    ) -> None:
        self.name = name
        self.client = client
        self.settings = settings
        self.lookups = LookupCache(client, settings.lookup_entities)
        self.statuses = StatusCache(client, settings)
        self._origins: dict[str, str | None] = {
            channel.lower(): guid.lower() for channel, guid in settings.origin_ids.items()
        }
        self._authors: dict[str, str] = {}

    async def prepare(self) -> None:
        """Load the case statuses and resolve origin names once (at start-up); every
        operation also does this lazily."""
        await self.statuses.statuses()
        for channel in self.settings.origin_names:
            await self._origin_id(channel)

    # -- contacts ----------------------------------------------------------------------------

    async def sync_contact(self, contact: Contact) -> Contact:
        """The contact with ``crm_id`` set: found by e-mail or phone, or created."""
        known = contact.crm_id if odata.is_guid(contact.crm_id) else ""
        if known and await self.client.get("Contact", known, select=["Id"]) is not None:
            return contact
        found = await self._find_contact(contact)
        if found is None:
            found = await self._create_contact(contact)
        return replace(contact, crm_id=found)

    async def _find_contact(self, contact: Contact) -> str | None:
        emails = [e.strip() for e in contact.emails if e.strip()]
        if emails:
            rows = await self.client.query(
                "Contact",
                filter=odata.any_of("Email", emails),
                select=["Id"],
                orderby="CreatedOn",
                top=1,
            )
            if rows:
                return str(rows[0]["Id"])
            rows = await self.client.query(
                "ContactCommunication",
                filter=odata.any_of("Number", emails),
                select=["ContactId"],
                orderby="CreatedOn",
                top=1,
            )
            if rows and rows[0].get("ContactId"):
                return str(rows[0]["ContactId"])
        for phone in contact.phones:
            found = await self._find_by_phone(phone)
            if found:
                return found
        return None

    async def _find_by_phone(self, phone: str) -> str | None:
        _, nsn, _ = national(phone)
        if len(nsn) < 4:
            return None
        rows = await self.client.query(
            "ContactCommunication",
            filter=odata.startswith("SearchNumber", nsn[::-1]),
            select=["ContactId", "Number"],
            orderby="CreatedOn",
            top=_PHONE_CANDIDATES,
        )
        for row in rows:
            if row.get("ContactId") and phone_matches(phone, str(row.get("Number") or "")):
                return str(row["ContactId"])
        # Creatio keeps SearchNumber itself; the columns below catch instances where the
        # communication rows are missing. Only the last digits can be matched in OData.
        tail = nsn[-4:]
        rows = await self.client.query(
            "Contact",
            filter=odata.endswith("MobilePhone", tail) | odata.endswith("Phone", tail),
            select=["Id", "MobilePhone", "Phone"],
            orderby="CreatedOn",
            top=_PHONE_CANDIDATES,
        )
        for row in rows:
            for column in ("MobilePhone", "Phone"):
                if phone_matches(phone, str(row.get(column) or "")):
                    return str(row["Id"])
        return None

    async def _create_contact(self, contact: Contact) -> str:
        (_, body), *communications = contact_records(contact)
        created = await self.client.create("Contact", body)
        crm_id = str(created.get("Id") or body["Id"])
        for _, row in communications:
            await self.client.create("ContactCommunication", {**row, "ContactId": crm_id})
        log.info("created Creatio contact %s", crm_id)
        return crm_id

    # -- cases -------------------------------------------------------------------------------

    async def get_case(self, case_id: str) -> CaseRef | None:
        """The case with this id, its status and whether it is open; None if absent."""
        row = await self.client.get("Case", case_id, select=["Id", "Number", "StatusId"])
        return None if row is None else await self._case_ref(row)

    async def _case_ref(self, row: dict[str, Any]) -> CaseRef:
        case_id = str(row["Id"]).lower()
        status = str(row.get("StatusId") or "")
        is_open = await self.statuses.is_open(status) if status else True
        return CaseRef(
            crm=self.name,
            id=case_id,
            number=str(row.get("Number") or ""),
            status=status,
            is_open=is_open,
            url=self.settings.case_url(case_id),
        )

    async def find_open_case(self, contact: Contact) -> CaseRef | None:
        """The contact's newest case whose status is open, or None."""
        if not contact.crm_id:
            raise ValueError("find_open_case needs a contact with crm_id (sync_contact first)")
        open_ids = await self.statuses.open_ids()
        if not open_ids:
            return None
        where = odata.eq("ContactId", Guid(contact.crm_id)) & odata.any_of(
            "StatusId", [Guid(s) for s in open_ids]
        )
        rows = await self.client.query(
            "Case",
            filter=where,
            select=["Id", "Number", "StatusId"],
            orderby="CreatedOn desc",
            top=1,
        )
        return await self._case_ref(rows[0]) if rows else None

    async def create_case(self, request: CaseRequest) -> CaseRef:
        """Create the case once per ``request.key`` (its Id) and return it with its Number."""
        key = Guid(request.key).value
        if request.maybe_written:
            existing = await self.get_case(key)
            if existing is not None:
                return existing
        created = await self.create_case_record(request, await self.case_body(request))
        if str(created.get("Id", key)).lower() != key:
            log.warning("Creatio gave case %s another Id (%s)", key, created.get("Id"))
        return await self._case_ref(created)

    async def create_case_record(
        self, request: CaseRequest, body: dict[str, Any]
    ) -> dict[str, Any]:
        """POST the case. When Creatio refuses a mapped field (a column it does not have, a
        value the column cannot take), that field is left out and the case written without
        it, with a line under "Fields left empty:" in its description: a mapping mistake
        must never cost the handoff. Refusals of the bridge's own columns still raise."""
        while True:
            try:
                return await self.client.create("Case", body)
            except CreatioError as exc:
                column = refused_column(exc.message) if exc.status == 400 else None
                if column is None or column not in request.fields or column not in body:
                    raise
                log.warning("case %s: Creatio refused the mapped field %s; writing the case "
                            "without it: %s", request.key, column, exc.message)
                line = left_out_line(column, request.fields[column].value, exc.message)
                body = {k: v for k, v in body.items() if k != column}
                body["Symptoms"] = add_left_empty(str(body.get("Symptoms") or ""), line)

    async def case_body(self, request: CaseRequest) -> dict[str, Any]:
        """The Case record for ``request``: defaults, then the mapped fields."""
        settings = self.settings
        contact_id = request.contact.crm_id or request.session.contact.crm_id
        if not contact_id:
            raise ValueError("create_case needs a contact with crm_id (sync_contact first)")
        body: dict[str, Any] = {
            "Id": Guid(request.key).value,
            "Subject": _clip(request.summary.subject or "(no subject)"),
            "Symptoms": request.summary.description,
            "StatusId": settings.new_status_id,
            "PriorityId": settings.priority_id,
            "ContactId": Guid(contact_id).value,
        }
        origin = await self._origin_id(request.session.channel)
        if origin:
            body["OriginId"] = origin
        if settings.owner_id:
            body["OwnerId"] = settings.owner_id
        if settings.group_id:
            body["GroupId"] = settings.group_id
        unset: list[str] = []
        for column, field in request.fields.items():
            if not odata.is_guid(column) and not column.replace("_", "a").isalnum():
                raise ValueError(f"{column!r} is not a Creatio column name")
            if column == "Id":
                raise ValueError("a mapped field cannot set the case's Id")
            if field.kind != "lookup":
                body[column] = field.value
                continue
            try:
                body[column] = await self.lookups.resolve(column, field.value)
            except (LookupNotFound, ValueError) as exc:
                if settings.strict_lookups:
                    raise
                log.warning("case %s: %s; column left unset", request.key, exc)
                unset.append(str(exc))
        # Said where the rep reads first, in the list the core keeps for fields left empty.
        for line in unset:
            body["Symptoms"] = add_left_empty(str(body["Symptoms"] or ""), line)
        return body

    async def _origin_id(self, channel: str) -> str | None:
        channel = channel.lower()
        if channel in self._origins:
            return self._origins[channel]
        name = self.settings.origin_names.get(channel)
        origin: str | None = None
        if name:
            try:
                origin = await self.lookups.resolve("CaseOrigin", name)
            except LookupNotFound:
                log.warning("no CaseOrigin named %r for channel %s; cases get none", name, channel)
        self._origins[channel] = origin
        return origin

    async def resolve_case(self, case_id: str) -> None:
        """Set the configured resolved status, unless the case is already resolved or final."""
        case = await self.get_case(case_id)
        if case is None:
            raise CreatioError("Case", "resolve", 404, f"no case {case_id}")
        target = self.settings.resolved_status_id.lower()
        if case.status.lower() == target or not case.is_open:
            return
        await self.client.update("Case", case.id, {"StatusId": target})

    # -- activities --------------------------------------------------------------------------

    async def append_activity(self, request: ActivityRequest) -> ActivityRef:
        """Add the message as an activity once per ``request.key`` (its Id)."""
        key = Guid(request.key).value
        if request.maybe_written:
            existing = await self._existing_activity(key, request.case.id)
            if existing is not None:
                return existing
        created = await self.client.create("Activity", self.activity_body(request))
        return ActivityRef(self.name, str(created.get("Id") or key).lower(), request.case.id)

    async def append_activities(
        self, requests: Sequence[ActivityRequest]
    ) -> list[ActivityRef]:
        """Add messages as activities in ``$batch`` calls of up to 100, once per key each.

        On a retry the Ids that already exist are not sent again; when a batch fails part way
        or its answer is lost, the activities still missing are written one by one.
        """
        if not self.settings.use_batch:
            return [await self.append_activity(request) for request in requests]
        keys = [Guid(r.key).value for r in requests]
        retry = any(r.maybe_written for r in requests)
        have = await self._existing_ids("Activity", keys) if retry else set()
        batch = [
            BatchRequest("POST", "Activity", self.activity_body(r, r.case.id), id=f"a{i}")
            for i, r in enumerate(requests)
            if keys[i] not in have
        ]
        complete = True
        try:
            answers = await self.client.batch(batch) if batch else []
            complete = len(answers) == len(batch) and all(a.ok for a in answers)
        except AmbiguousWriteError:
            complete = False
        if not complete:
            log.warning("activities: $batch incomplete; writing what is missing one by one")
            have = await self._existing_ids("Activity", keys)
            for key, request in zip(keys, requests, strict=True):
                if key not in have:
                    await self.client.create("Activity", self.activity_body(request,
                                                                            request.case.id))
        return [ActivityRef(self.name, k, r.case.id) for k, r in zip(keys, requests, strict=True)]

    async def _existing_activity(self, key: str, case_id: str) -> ActivityRef | None:
        row = await self.client.get("Activity", key, select=["Id", "CaseId"])
        if row is None and self.settings.marker_column:
            rows = await self.client.query(
                "Activity",
                filter=odata.eq(self.settings.marker_column, marker(key)),
                select=["Id", "CaseId"],
                top=1,
            )
            row = rows[0] if rows else None
        if row is None:
            return None
        case = str(row.get("CaseId") or case_id).lower()
        return ActivityRef(self.name, str(row["Id"]).lower(), case)

    def activity_body(self, request: ActivityRequest, case_id: str | None = None) -> dict[str, Any]:
        """The Activity record for one message of a case."""
        message = request.message
        is_email = message.channel.lower() == "email"
        sent = odata.format_datetime(message.sent_at)
        sender = message.sender
        if is_email and message.sender_name:
            sender = f'"{message.sender_name}" <{message.sender}>'
        body: dict[str, Any] = {
            "Id": Guid(request.key).value,
            "Title": _clip(request.title or message.subject or "(no subject)"),
            "Body": request.body_html or request.body_text,
            "IsHtmlBody": bool(request.body_html),
            "TypeId": ACTIVITY_TYPE_EMAIL if is_email else self.settings.sms_activity_type_id,
            "ActivityCategoryId": ACTIVITY_CATEGORY_EMAIL if is_email else ACTIVITY_CATEGORY_TODO,
            "MessageTypeId": (
                MESSAGE_TYPE_INCOMING
                if message.author == Author.CUSTOMER
                else MESSAGE_TYPE_OUTGOING
            ),
            "Sender": sender,
            "Recepient": "; ".join(message.recipients),
            "StartDate": sent,
            "DueDate": sent,
            "StatusId": ACTIVITY_STATUS_COMPLETED,
            "PriorityId": ACTIVITY_PRIORITY_MEDIUM,
            "CaseId": Guid(case_id or request.case.id).value,
        }
        contact_id = request.session.contact.crm_id
        if contact_id and odata.is_guid(contact_id):
            body["ContactId"] = contact_id.lower()
        if self.settings.marker_column:
            body[self.settings.marker_column] = marker(body["Id"])
        return body

    async def _existing_ids(self, entity: str, ids: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(ids))
        found: set[str] = set()
        for start in range(0, len(wanted), _IDS_PER_QUERY):
            chunk = [Guid(i) for i in wanted[start : start + _IDS_PER_QUERY]]
            rows = await self.client.query(
                entity, filter=odata.any_of("Id", chunk), select=["Id"], top=len(chunk)
            )
            found.update(str(r["Id"]).lower() for r in rows if r.get("Id"))
        return found

    async def read_activity(self, activity_id: str) -> dict[str, Any] | None:
        """An activity as the reply webhook needs it, or None when it does not exist.

        Keys: ``id, case_id, title, body, is_html, type_id, message_type_id, sender,
        recipients, author_id, author_name, created_on, written_by_bridge`` (True for the
        activities the bridge wrote itself, which are not agent replies).
        """
        columns = [
            "Id",
            "Title",
            "Body",
            "IsHtmlBody",
            "TypeId",
            "MessageTypeId",
            "Sender",
            "Recepient",
            "CaseId",
            "CreatedById",
            "CreatedOn",
        ]
        if self.settings.marker_column:
            columns.append(self.settings.marker_column)
        row = await self.client.get("Activity", activity_id, select=columns)
        if row is None:
            return None
        author_id = str(row.get("CreatedById") or "").lower()
        mark = (
            str(row.get(self.settings.marker_column) or "") if self.settings.marker_column else ""
        )
        return {
            "id": str(row.get("Id") or activity_id).lower(),
            "case_id": str(row.get("CaseId") or "").lower(),
            "title": str(row.get("Title") or ""),
            "body": str(row.get("Body") or ""),
            "is_html": bool(row.get("IsHtmlBody")),
            "type_id": str(row.get("TypeId") or "").lower(),
            "message_type_id": str(row.get("MessageTypeId") or "").lower(),
            "sender": str(row.get("Sender") or ""),
            "recipients": str(row.get("Recepient") or ""),
            "author_id": author_id,
            "author_name": await self._author_name(author_id),
            "created_on": str(row.get("CreatedOn") or ""),
            "written_by_bridge": mark.startswith(MARKER_PREFIX),
        }

    async def _author_name(self, contact_id: str) -> str:
        if not odata.is_guid(contact_id):
            return ""
        if contact_id not in self._authors:
            row = await self.client.get("Contact", contact_id, select=["Name"])
            self._authors[contact_id] = str(row.get("Name") or "") if row else ""
        return self._authors[contact_id]

    # -- attachments -------------------------------------------------------------------------

    async def attach_file(self, request: AttachmentRequest) -> str:
        """Upload one attachment as a CaseFile with Id ``request.key``, once."""
        key = Guid(request.key).value
        if request.maybe_written and await self._existing_ids("CaseFile", [key]):
            return key
        attachment = request.attachment
        return await self.upload_attachment(request.case.id, attachment.name,
                                            attachment.content_type, request.data, key)

    async def upload_attachment(
        self, case_id: str, name: str, content_type: str, data: bytes, key: str
    ) -> str:
        """Attach a file to the case as the CaseFile ``key``; its id (see
        :func:`.files.upload_case_file`)."""
        return await upload_case_file(self.client, case_id, name, content_type, data, key)
