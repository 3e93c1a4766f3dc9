"""A whole handoff in two round trips: one ``$batch`` of reads, one atomic ``$batch`` of writes.

The reads ask at once for everything the handoff needs to decide: the contact (by its
Creatio id, by the Id casebridge would have given it, by e-mail, by phone), the contact's
open cases, and on a retry the case an earlier attempt wrote. The writes carry
casebridge's own Ids, so the case names its new contact and the activities name their new
case inside the same batch, in one atomicity group: they land together or not at all.

A returning contact whose open case the bridge remembers (plugin state, kept after every
handoff) costs one request: the write batch alone, led by an empty PATCH of that case in
the same atomicity group. Creatio refuses any change to a case in a final status, so when
the case was closed meanwhile the whole batch is refused, the memory is dropped and the
handoff takes the two round trips.

A retry recognises its own records by Id and writes only what is missing. When the write
batch does not land whole (a refused atomicity group, a record whose Id the server
replaced, a lost answer) the handoff is completed with today's sequence of single requests,
each of which looks before it writes; ``atomic_handoff = false`` uses that sequence from the
start. Attachments stay separate requests (the ``attach`` jobs).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from casebridge.plugin import (
    ActivityRef,
    ActivityRequest,
    AmbiguousWriteError,
    CaseRef,
    CaseRequest,
    Contact,
    HandoffRequest,
    HandoffResult,
    PluginState,
)

from . import odata
from .client import BatchRequest, BatchResponse, CreatioError, error_message
from .contacts import contact_own_id, contact_records, national, phone_matches
from .odata import Guid
from .operations import CreatioOperations

log = logging.getLogger("casebridge.creatio")

ATOMICITY_GROUP = "handoff"
_CANDIDATES = 50
_CASE_COLUMNS = ["Id", "Number", "StatusId", "ContactId"]


@dataclass
class Reads:
    """The read batch's questions (by request id) and, once answered, their rows."""

    requests: list[BatchRequest] = field(default_factory=list)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def ask(self, request_id: str, entity: str, **query: Any) -> None:
        url = f"{entity}?{odata.query_string(**query)}"
        self.requests.append(BatchRequest("GET", url, id=request_id))

    def answer(self, answers: Sequence[BatchResponse]) -> None:
        for answer in answers:
            if not answer.ok:
                raise CreatioError("$batch", "read", answer.status, _answer_message(answer))
            value = answer.body.get("value") if isinstance(answer.body, dict) else None
            if not isinstance(value, list):
                raise CreatioError("$batch", "read", answer.status, "no 'value' in an answer")
            self.rows[answer.id] = [row for row in value if isinstance(row, dict)]

    def first(self, request_id: str, column: str) -> str:
        rows = self.rows.get(request_id) or []
        return str(rows[0].get(column) or "").lower() if rows else ""


def read_requests(
    request: HandoffRequest, open_status_ids: Sequence[str]
) -> tuple[Reads, set[str]]:
    """The read batch for ``request``, and the contact ids its open-case question covers.

    Pure: builds queries, sends nothing.
    """
    contact = request.contact
    reads = Reads()
    known = contact.crm_id.lower() if odata.is_guid(contact.crm_id) else ""
    ids = sorted({contact_own_id(contact), *([known] if known else [])})
    reads.ask(
        "own",
        "Contact",
        filter=odata.any_of("Id", [Guid(i) for i in ids]),
        select=["Id"],
        top=len(ids),
    )
    # Open cases of the contact, however it is found: by id, or through its e-mail or phone.
    whose = [odata.any_of("ContactId", [Guid(i) for i in ids])]
    whose += _ask_by_email(reads, contact) + _ask_by_phone(reads, contact)
    if open_status_ids:
        reads.ask(
            "cases",
            "Case",
            filter=odata.any_expr(*whose)
            & odata.any_of("StatusId", [Guid(s) for s in open_status_ids]),
            select=_CASE_COLUMNS,
            orderby="CreatedOn desc",
            top=_CANDIDATES,
        )
    mine = [i for i in (request.case_id, request.key if request.maybe_written else "") if i]
    if mine:
        reads.ask(
            "mine",
            "Case",
            filter=odata.any_of("Id", [Guid(i) for i in mine]),
            select=_CASE_COLUMNS,
            top=len(mine),
        )
    return reads, set(ids)


def _ask_by_email(reads: Reads, contact: Contact) -> list[odata.Expr]:
    """Ask for the contact by its e-mail addresses; the filter for its cases by them."""
    emails = [e.strip() for e in contact.emails if e.strip()]
    if not emails:
        return []
    reads.ask(
        "email",
        "Contact",
        filter=odata.any_of("Email", emails),
        select=["Id"],
        orderby="CreatedOn",
        top=1,
    )
    reads.ask(
        "comm",
        "ContactCommunication",
        filter=odata.any_of("Number", emails),
        select=["ContactId"],
        orderby="CreatedOn",
        top=1,
    )
    return [odata.any_of("Contact/Email", emails)]


def _ask_by_phone(reads: Reads, contact: Contact) -> list[odata.Expr]:
    """Ask for the contact by each phone number (its communications, then the columns by
    the last digits); the filters for its cases by them."""
    whose: list[odata.Expr] = []
    for index, phone in enumerate(contact.phones):
        _, nsn, _ = national(phone)
        if len(nsn) < 4:
            continue
        reads.ask(
            f"phone-comm{index}",
            "ContactCommunication",
            filter=odata.startswith("SearchNumber", nsn[::-1]),
            select=["ContactId", "Number"],
            orderby="CreatedOn",
            top=_CANDIDATES,
        )
        tail = nsn[-4:]
        reads.ask(
            f"phone{index}",
            "Contact",
            filter=odata.endswith("MobilePhone", tail) | odata.endswith("Phone", tail),
            select=["Id", "MobilePhone", "Phone"],
            orderby="CreatedOn",
            top=_CANDIDATES,
        )
        whose.append(
            odata.endswith("Contact/MobilePhone", tail) | odata.endswith("Contact/Phone", tail)
        )
    return whose


def found_contact(reads: Reads, contact: Contact) -> tuple[str, str]:
    """(Creatio contact id, how it was found) from the answered reads; ("", "") when the
    contact is not in Creatio. Pure."""
    own = {str(r.get("Id") or "").lower() for r in reads.rows.get("own", [])}
    known = contact.crm_id.lower()
    if known and known in own:
        return known, "id"
    if contact_own_id(contact) in own:
        return contact_own_id(contact), "id"
    if reads.first("email", "Id"):
        return reads.first("email", "Id"), "email"
    if reads.first("comm", "ContactId"):
        return reads.first("comm", "ContactId"), "communication"
    for index, phone in enumerate(contact.phones):
        for row in reads.rows.get(f"phone-comm{index}", []):
            if row.get("ContactId") and phone_matches(phone, str(row.get("Number") or "")):
                return str(row["ContactId"]).lower(), "communication"
        for row in reads.rows.get(f"phone{index}", []):
            if any(phone_matches(phone, str(row.get(c) or "")) for c in ("MobilePhone", "Phone")):
                return str(row["Id"]).lower(), "phone"
    return "", ""


@dataclass
class Plan:
    """What the write batch must do."""

    contact: Contact
    new_contact: bool
    case: CaseRef
    new_case: CaseRequest | None
    created: bool


class AtomicHandoff:
    """The ``handoff`` hook of the Creatio plugin. See the module docstring. ``state`` is
    where open cases are remembered (the plugin's own state), or None to remember nothing."""

    def __init__(self, ops: CreatioOperations, state: PluginState | None = None) -> None:
        self.ops = ops
        self.name = ops.name
        self.client = ops.client
        self.settings = ops.settings
        self.state = state

    async def run(self, request: HandoffRequest) -> HandoffResult:
        if not self.settings.atomic_handoff:
            result = await self.in_steps(request)
        else:
            result = await self._remembered(request) or await self._two_round_trips(request)
        if self.state is not None and result.contact.crm_id:
            await self.state.put(
                _memory_key(result.contact.crm_id),
                {"id": result.case.id, "number": result.case.number},
            )
        return result

    async def _remembered(self, request: HandoffRequest) -> HandoffResult | None:
        """The append in one request to the contact's remembered open case, or None."""
        settings = self.settings
        # Only when "open" means "not final", which is what the guarding PATCH checks.
        if (
            self.state is None
            or not request.contact.crm_id
            or request.case_id
            or request.maybe_written
            or settings.open_status_ids
            or not settings.treat_resolved_as_open
        ):
            return None
        key = _memory_key(request.contact.crm_id)
        known = await self.state.get(key)
        if not isinstance(known, dict) or not odata.is_guid(known.get("id")):
            return None
        case_id = str(known["id"]).lower()
        case = CaseRef(self.name, case_id, str(known.get("number") or ""),
                       url=settings.case_url(case_id))
        plan = Plan(request.contact, False, case, None, False)
        activities = await self._activities(request, plan)
        guard = BatchRequest("PATCH", f"Case({case_id})", {}, id="case")
        writes = [guard, *await self._writes(plan, activities, set())]
        answers = await self._send(
            [replace(guard, atomicity_group=ATOMICITY_GROUP), *writes[1:]], quiet=True
        )
        if answers is None:
            log.info("handoff: case %s no longer takes activities; looking again", case_id)
            await self.state.delete(key)
            return None
        refs = [ActivityRef(self.name, Guid(a.key).value, case.id) for a in activities]
        return HandoffResult(plan.contact, case, False, refs)

    async def _two_round_trips(self, request: HandoffRequest) -> HandoffResult:
        plan = await self._plan(request)
        activities = await self._activities(request, plan)
        keys = [Guid(a.key).value for a in activities]
        have: set[str] = set()
        if not plan.new_case and (
            request.maybe_written or any(a.maybe_written for a in activities)
        ):
            have = await self.ops._existing_ids("Activity", keys)
        writes = await self._writes(plan, activities, have)
        answers = await self._send(writes)
        if answers is None:
            # Whatever landed is recognised by its Id; the rest is written one by one.
            return await self.in_steps(request, plan=plan)
        case = plan.case
        if plan.new_case is not None:
            body = next((a.body for a in answers if a.id == "case"), None)
            if isinstance(body, dict) and body.get("Id"):
                case = await self.ops._case_ref(body)
        refs = [ActivityRef(self.name, key, case.id) for key in keys]
        return HandoffResult(plan.contact, case, plan.created, refs)

    # -- reading -------------------------------------------------------------------------

    async def _plan(self, request: HandoffRequest) -> Plan:
        open_ids = await self.ops.statuses.open_ids()
        reads, covered = read_requests(request, open_ids)
        reads.answer(await self.client.batch(reads.requests))
        crm_id, how = found_contact(reads, request.contact)
        new_contact = not crm_id
        contact = replace(request.contact, crm_id=crm_id or contact_own_id(request.contact))
        rows = {str(r.get("Id") or "").lower(): r for r in reads.rows.get("mine", [])}
        for case_id, created in ((request.case_id.lower(), False), (request.key.lower(), True)):
            if case_id and case_id in rows:
                return Plan(
                    contact, new_contact, await self.ops._case_ref(rows[case_id]), None, created
                )
        open_case = await self._open_case(reads, contact, how, covered, new_contact)
        if open_case is not None:
            return Plan(contact, new_contact, open_case, None, False)
        described = await request.describe(contact)
        case = CaseRef(self.name, Guid(request.key).value, url=self.settings.case_url(request.key))
        return Plan(contact, new_contact, case, described, True)

    async def _open_case(
        self, reads: Reads, contact: Contact, how: str, covered: set[str], new_contact: bool
    ) -> CaseRef | None:
        if new_contact:
            return None
        for row in reads.rows.get("cases", []):
            if str(row.get("ContactId") or "").lower() == contact.crm_id:
                return await self.ops._case_ref(row)
        if contact.crm_id in covered or how in ("email", "phone"):
            return None
        # Found through a communication row: its open cases were not in the question.
        return await self.ops.find_open_case(contact)

    async def _activities(self, request: HandoffRequest, plan: Plan) -> list[ActivityRequest]:
        session = replace(request.session, contact=plan.contact)
        return [
            replace(a, session=session, case=plan.case) for a in await request.activities(plan.case)
        ]

    # -- writing -------------------------------------------------------------------------

    async def _writes(
        self, plan: Plan, activities: Sequence[ActivityRequest], have: set[str]
    ) -> list[BatchRequest]:
        writes: list[BatchRequest] = []
        if plan.new_contact:
            for index, (entity, body) in enumerate(contact_records(plan.contact)):
                writes.append(BatchRequest("POST", entity, body, id=f"contact{index}"))
        if plan.new_case is not None:
            body = await self.ops.case_body(plan.new_case)
            writes.append(BatchRequest("POST", "Case", body, id="case"))
        for index, activity in enumerate(activities):
            if Guid(activity.key).value not in have:
                body = self.ops.activity_body(activity, plan.case.id)
                writes.append(BatchRequest("POST", "Activity", body, id=f"a{index}"))
        return [replace(w, atomicity_group=ATOMICITY_GROUP) for w in writes]

    async def _send(
        self, writes: list[BatchRequest], quiet: bool = False
    ) -> list[BatchResponse] | None:
        """The answers when every write landed; None when the batch did not land whole
        (logged as a warning unless ``quiet``)."""
        if not writes:
            return []
        try:
            answers = await self.client.batch(writes)
        except AmbiguousWriteError as exc:
            log.warning(
                "handoff: no answer to the write batch (%s); completing it request by request", exc
            )
            return None
        except CreatioError as exc:
            log.warning(
                "handoff: Creatio refused the write batch (%s); completing it request "
                "by request. If this Creatio refuses atomicity groups, set "
                "atomic_handoff = false",
                exc,
            )
            return None
        failed = next((a for a in answers if not a.ok), None)
        if failed is not None or len(answers) != len(writes):
            detail = _answer_message(failed) if failed else "answers missing"
            (log.info if quiet else log.warning)(
                "handoff: the write batch was rolled back (%s); completing it request by request",
                detail,
            )
            return None
        for answer, write in zip(answers, writes, strict=True):
            sent = (write.body or {}).get("Id")
            got = answer.body.get("Id") if isinstance(answer.body, dict) else None
            if sent and got and str(got).lower() != str(sent).lower():
                log.error(
                    "handoff: Creatio gave %s %s the Id %s; it does not keep "
                    "client-chosen Ids: set atomic_handoff = false",
                    write.url,
                    sent,
                    got,
                )
        return answers

    # -- the sequence of single requests -------------------------------------------------

    async def in_steps(self, request: HandoffRequest, plan: Plan | None = None) -> HandoffResult:
        """Today's sequence: sync the contact, find the open case or create one, then add the
        activities; after a failed batch (``plan`` given) every step looks before writing."""
        ops = self.ops
        retry = plan is not None or request.maybe_written
        contact = await ops.sync_contact(plan.contact if plan else request.contact)
        case: CaseRef | None = None
        created = False
        if plan is not None and plan.new_case is None:
            case, created = plan.case, plan.created
        elif request.case_id:
            case = await ops.get_case(request.case_id)
        if case is None and not retry:
            case = await ops.find_open_case(contact)
        if case is None:
            described = plan.new_case if plan and plan.new_case else await request.describe(contact)
            described = replace(
                described,
                contact=contact,
                maybe_written=retry,
                session=replace(described.session, contact=contact),
            )
            case, created = await ops.create_case(described), True
        session = replace(request.session, contact=contact)
        activities = [
            replace(a, session=session, case=case, maybe_written=a.maybe_written or retry)
            for a in await request.activities(case)
        ]
        refs = await ops.append_activities(activities) if activities else []
        return HandoffResult(contact, case, created, refs)


def _memory_key(contact_crm_id: str) -> str:
    return f"open-case:{contact_crm_id.lower()}"


def _answer_message(answer: BatchResponse) -> str:
    message = error_message(answer.body) if isinstance(answer.body, dict) else ""
    return f"{answer.id}: HTTP {answer.status}" + (f": {message}" if message else "")
