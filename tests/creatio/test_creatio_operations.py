"""CreatioOperations against the in-memory Creatio: contacts, cases, activities, batch."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import phonenumbers
import pytest
from casebridge.errors import PermanentError
from casebridge.model import (
    ActivityRequest,
    Author,
    CaseRef,
    CaseRequest,
    Contact,
    Direction,
    FieldValue,
    Message,
    Session,
    SessionStatus,
    Summary,
    derived_id,
)
from casebridge.secrets import Secret
from casebridge_creatio import settings as cs
from casebridge_creatio.client import CreatioClient
from casebridge_creatio.contacts import phone_matches, search_number
from casebridge_creatio.lookups import LookupNotFound
from casebridge_creatio.operations import CreatioOperations
from casebridge_creatio.settings import CreatioSettings
from fake_creatio import BASE, PASSWORD, SMS_ORIGIN, USER, FakeCreatio, Fault
from hypothesis import assume, given
from hypothesis import strategies as st

pytestmark = pytest.mark.anyio

CLOSED = "3e7f420c-f46b-1410-fc9a-0050ba5d6c38"
RESOLVED = cs.STATUS_RESOLVED
HIGH = "aaaaaaaa-f46b-1410-ee8c-0050ba5d6c38"


def make(fake: FakeCreatio, **overrides) -> CreatioOperations:
    settings = CreatioSettings(
        url=BASE, username=USER, password=Secret(PASSWORD), **overrides
    )

    async def no_sleep(_: float) -> None:
        return None

    client = CreatioClient(settings, transport=fake.transport(), sleep=no_sleep)
    return CreatioOperations(client, settings)


def contact(crm_id: str = "", **kw) -> Contact:
    return Contact(id=kw.pop("id", "c1"), crm_id=crm_id, **kw)


def session(channel: str = "email", crm_id: str = "") -> Session:
    return Session(
        id="s1",
        channel=channel,
        contact=contact(crm_id, emails=("ann@example.org",)),
        status=SessionStatus.HANDED_OFF,
    )


def case_request(crm_id: str, channel: str = "email", **kw) -> CaseRequest:
    fields = kw.pop("fields", {})
    return CaseRequest(
        key=kw.pop("key", str(uuid.uuid4())),
        session=session(channel, crm_id),
        contact=contact(crm_id),
        summary=Summary("Printer on fire", "It started smoking after the update."),
        fields=fields,
        **kw,
    )


def message(channel: str = "email", author: Author = Author.CUSTOMER, n: int = 0) -> Message:
    return Message(
        id=f"m{n}",
        channel=channel,
        direction=Direction.INBOUND if author == Author.CUSTOMER else Direction.OUTBOUND,
        author=author,
        external_id=f"x{n}",
        sender="ann@example.org" if channel == "email" else "+14155550100",
        sender_name="Ann",
        recipients=("support@acme.test",),
        text=f"message {n}",
        sent_at=datetime(2024, 5, 1, 12, n % 60, tzinfo=UTC),
    )


def activity_request(case_id: str, channel: str = "email", n: int = 0, **kw) -> ActivityRequest:
    return ActivityRequest(
        key=kw.pop("key", derived_id("act", case_id, str(n))),
        case=CaseRef("creatio", case_id),
        session=session(channel, kw.pop("crm_id", "")),
        message=message(channel, kw.pop("author", Author.CUSTOMER), n),
        title=f"Message {n}",
        body_text=f"text {n}",
        body_html=kw.pop("body_html", ""),
        **kw,
    )


def add(fake: FakeCreatio, entity: str, **row) -> str:
    row.setdefault("Id", str(uuid.uuid4()))
    fake.tables[entity][row["Id"]] = row
    return row["Id"]


# -- phone matching ------------------------------------------------------------------------

regions = st.sampled_from(["US", "GB", "DE", "FR", "NL", "AU", "IN", "BR"])


@st.composite
def numbers(draw):
    region = draw(regions)
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    nsn = phonenumbers.national_significant_number(example)
    tail = draw(st.text("0123456789", min_size=4, max_size=4))
    parsed = phonenumbers.parse(f"+{example.country_code}{nsn[:-4]}{tail}")
    return parsed


FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.NATIONAL,
    phonenumbers.PhoneNumberFormat.RFC3966,
]


@given(numbers(), st.sampled_from(FORMATS))
def test_phone_matches_any_formatting_of_the_same_number(number, style):
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    formatted = phonenumbers.format_number(number, style)
    assert phone_matches(e164, formatted)
    assert phone_matches(e164, formatted.replace(" ", "-"))
    assert search_number(e164) == e164[1:][::-1]


@given(numbers(), st.integers(min_value=1, max_value=9))
def test_phone_does_not_match_another_number(number, delta):
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    other = e164[:-1] + str((int(e164[-1]) + delta) % 10)
    assume(other != e164)
    assert not phone_matches(e164, other)
    assert not phone_matches(e164, "")


# -- contacts --------------------------------------------------------------------------------


async def test_sync_contact_finds_by_email_then_by_communication_row():
    fake = FakeCreatio()
    ann = add(fake, "Contact", Name="Ann", Email="ann@example.org", CreatedOn="1")
    bob = add(fake, "Contact", Name="Bob", CreatedOn="1")
    add(fake, "ContactCommunication", ContactId=bob, Number="bob@example.org", CreatedOn="1")
    ops = make(fake)
    async with ops.client:
        found = await ops.sync_contact(contact(emails=("ann@example.org",)))
        assert found.crm_id == ann
        assert (await ops.sync_contact(contact(emails=("bob@example.org",)))).crm_id == bob
    assert len(fake.tables["Contact"]) == 2


async def test_sync_contact_matches_phone_digits_not_formatting():
    fake = FakeCreatio()
    by_row = add(fake, "Contact", Name="Row")
    add(
        fake,
        "ContactCommunication",
        ContactId=by_row,
        Number="+1 (415) 555-0100",
        SearchNumber=search_number("+14155550100"),
        CreatedOn="1",
    )
    by_column = add(fake, "Contact", Name="Col", MobilePhone="030 1234 5678", CreatedOn="1")
    add(fake, "Contact", Name="Other", MobilePhone="030 9999 5678", CreatedOn="2")
    ops = make(fake)
    async with ops.client:
        assert (await ops.sync_contact(contact(phones=("+14155550100",)))).crm_id == by_row
        assert (await ops.sync_contact(contact(phones=("+493012345678",)))).crm_id == by_column


async def test_sync_contact_creates_once_with_extra_communication_rows():
    fake = FakeCreatio()
    ops = make(fake)
    who = contact(
        id="cust-7",
        name="",
        emails=("ann@example.org", "ann@home.example"),
        phones=("+14155550100",),
    )
    async with ops.client:
        first = await ops.sync_contact(who)
        again = await ops.sync_contact(replace(who, crm_id=""))
    assert first.crm_id == again.crm_id == derived_id("creatio", "contact", "cust-7")
    row = fake.tables["Contact"][first.crm_id]
    assert (row["Name"], row["Email"], row["MobilePhone"]) == (
        "ann@example.org",
        "ann@example.org",
        "+14155550100",
    )
    comms = list(fake.tables["ContactCommunication"].values())
    assert [(c["Number"], c["CommunicationTypeId"]) for c in comms] == [
        ("ann@home.example", cs.COMMUNICATION_EMAIL)
    ]


# -- cases -----------------------------------------------------------------------------------


async def test_find_open_case_is_the_newest_not_final_one():
    fake = FakeCreatio()
    who = add(fake, "Contact", Name="Ann")
    old = add(fake, "Case", ContactId=who, StatusId=cs.STATUS_NEW, CreatedOn="2024-01", Number="1")
    resolved = add(fake, "Case", ContactId=who, StatusId=RESOLVED, CreatedOn="2024-02", Number="2")
    add(fake, "Case", ContactId=who, StatusId=CLOSED, CreatedOn="2024-03", Number="3")
    add(fake, "Case", ContactId=str(uuid.uuid4()), StatusId=cs.STATUS_NEW, CreatedOn="2024-04")
    ops = make(fake)
    async with ops.client:
        found = await ops.find_open_case(contact(who))
        assert found is not None and found.id == resolved and found.is_open
    strict = make(fake, treat_resolved_as_open=False)
    async with strict.client:
        found = await strict.find_open_case(contact(who))
        assert found is not None and found.id == old
        closed = await strict.find_open_case(contact(str(uuid.uuid4())))
        assert closed is None


async def test_create_case_writes_defaults_origin_and_mapped_fields():
    fake = FakeCreatio()
    who = add(fake, "Contact", Name="Ann")
    ops = make(fake, owner_id=str(uuid.uuid4()))
    request = case_request(
        who,
        channel="sms",
        fields={
            "PriorityId": FieldValue("High", "lookup"),
            "UsrProduct": FieldValue("Toaster 3000", "text"),
        },
    )
    async with ops.client:
        case = await ops.create_case(request)
    row = fake.tables["Case"][request.key]
    assert case.id == request.key and case.number == row["Number"] and case.is_open
    assert case.url.endswith(f"/0/Shell/#Card/Case_FormPage/edit/{request.key}")
    assert row["Subject"] == "Printer on fire"
    assert row["Symptoms"] == "It started smoking after the update."
    assert (row["StatusId"], row["ContactId"]) == (cs.STATUS_NEW, who)
    assert (row["OriginId"], row["PriorityId"], row["UsrProduct"]) == (
        SMS_ORIGIN,
        HIGH,
        "Toaster 3000",
    )
    assert row["OwnerId"] == ops.settings.owner_id and "GroupId" not in row


async def test_unknown_lookup_value_is_noted_on_the_case_or_fails_when_strict():
    fake = FakeCreatio()
    who = add(fake, "Contact", Name="Ann")
    fields = {"PriorityId": FieldValue("Apocalyptic", "lookup")}
    ops = make(fake)
    async with ops.client:
        await ops.create_case(case_request(who, fields=fields, key=str(uuid.uuid4())))
    (row,) = fake.tables["Case"].values()
    assert row["Symptoms"] == (
        "It started smoking after the update.\n\nFields left empty:\n"
        "- PriorityId: no CasePriority record is named 'Apocalyptic' in Creatio"
    )
    assert "Notes" not in row
    assert row["PriorityId"] == cs.CASE_PRIORITY_MEDIUM
    strict = make(fake, strict_lookups=True)
    async with strict.client:
        with pytest.raises(LookupNotFound, match="PriorityId: no CasePriority record") as info:
            await strict.create_case(case_request(who, fields=fields))
    assert isinstance(info.value, PermanentError)


async def test_create_case_maybe_written_returns_the_existing_case_without_writing():
    fake = FakeCreatio()
    who = add(fake, "Contact", Name="Ann")
    ops = make(fake)
    request = case_request(who)
    async with ops.client:
        first = await ops.create_case(request)
        again = await ops.create_case(replace(request, maybe_written=True))
    assert again == first
    assert len(fake.requests_to("POST", "/odata/Case")) == 1


async def test_resolve_case_sets_the_resolved_status_unless_final():
    fake = FakeCreatio()
    open_case = add(fake, "Case", StatusId=cs.STATUS_NEW)
    closed = add(fake, "Case", StatusId=CLOSED)
    ops = make(fake)
    async with ops.client:
        await ops.resolve_case(open_case)
        await ops.resolve_case(closed)
    assert fake.tables["Case"][open_case]["StatusId"] == RESOLVED
    assert fake.tables["Case"][closed]["StatusId"] == CLOSED
    assert len(fake.requests_to("PATCH", "/odata/Case")) == 1


# -- activities ------------------------------------------------------------------------------


async def test_append_activity_email_from_customer_and_sms_from_agent():
    fake = FakeCreatio()
    case_id = add(fake, "Case", StatusId=cs.STATUS_NEW)
    who = add(fake, "Contact", Name="Ann")
    ops = make(fake)
    email = activity_request(case_id, body_html="<p>Hi</p>", crm_id=who)
    sms = activity_request(case_id, channel="sms", n=1, author=Author.AGENT)
    async with ops.client:
        ref = await ops.append_activity(email)
        await ops.append_activity(sms)
    assert (ref.id, ref.case_id) == (email.key, case_id)
    row = fake.tables["Activity"][email.key]
    assert (row["Body"], row["IsHtmlBody"], row["TypeId"]) == (
        "<p>Hi</p>",
        True,
        cs.ACTIVITY_TYPE_EMAIL,
    )
    assert row["MessageTypeId"] == cs.MESSAGE_TYPE_INCOMING
    assert (row["CaseId"], row["ContactId"], row["StatusId"]) == (
        case_id,
        who,
        cs.ACTIVITY_STATUS_COMPLETED,
    )
    assert row["StartDate"] == row["DueDate"] == "2024-05-01T12:00:00Z"
    assert row["Sender"] == '"Ann" <ann@example.org>'
    assert row["DetailedResult"] == f"casebridge:{email.key}"
    sms_row = fake.tables["Activity"][sms.key]
    assert (sms_row["Body"], sms_row["IsHtmlBody"]) == ("text 1", False)
    assert sms_row["TypeId"] == cs.ACTIVITY_TYPE_TASK
    assert sms_row["MessageTypeId"] == cs.MESSAGE_TYPE_OUTGOING


async def test_maybe_written_activity_is_found_by_marker_when_ids_are_ignored():
    fake = FakeCreatio(honour_ids=False)
    case_id = add(fake, "Case", StatusId=cs.STATUS_NEW)
    ops = make(fake)
    request = activity_request(case_id)
    async with ops.client:
        first = await ops.append_activity(request)
        again = await ops.append_activity(replace(request, maybe_written=True))
    assert again.id == first.id != request.key
    assert len(fake.tables["Activity"]) == 1


async def test_read_activity_tells_agent_replies_from_our_own():
    fake = FakeCreatio()
    case_id = add(fake, "Case", StatusId=cs.STATUS_NEW)
    agent = add(fake, "Contact", Name="Rita Rep")
    reply = add(
        fake,
        "Activity",
        Title="Re: printer",
        Body="<p>Try this</p>",
        IsHtmlBody=True,
        CaseId=case_id,
        CreatedById=agent,
        TypeId=cs.ACTIVITY_TYPE_EMAIL,
    )
    ops = make(fake)
    ours = activity_request(case_id)
    async with ops.client:
        await ops.append_activity(ours)
        got = await ops.read_activity(reply)
        own = await ops.read_activity(ours.key)
        missing = await ops.read_activity(str(uuid.uuid4()))
    assert got is not None and own is not None and missing is None
    assert (got["body"], got["is_html"], got["author_name"]) == (
        "<p>Try this</p>",
        True,
        "Rita Rep",
    )
    assert (got["case_id"], got["written_by_bridge"]) == (case_id, False)
    assert own["written_by_bridge"] is True


# -- activities in $batch --------------------------------------------------------------------


async def test_batch_writes_activities_split_at_100():
    fake = FakeCreatio()
    who = add(fake, "Contact", Name="Ann")
    ops = make(fake)
    request = case_request(who)
    activities = [activity_request(request.key, n=n) for n in range(150)]
    async with ops.client:
        case = await ops.create_case(request)
        refs = await ops.append_activities(activities)
    sizes = [len(json.loads(b.content)["requests"]) for b in fake.requests_to("POST", "$batch")]
    assert sizes == [100, 50]
    assert case.id == request.key and case.number.startswith("SR")
    assert [r.id for r in refs] == [a.key for a in activities]
    assert {a["CaseId"] for a in fake.tables["Activity"].values()} == {request.key}
    assert len(fake.tables["Activity"]) == 150


def cut_batch(fake: FakeCreatio, keep: int):
    """A $batch answer where the server processed ``keep`` requests, then failed."""

    def answer(request: httpx.Request) -> httpx.Response:
        payload = json.loads(request.content)
        first, rest = payload["requests"][:keep], payload["requests"][keep:]
        inner = httpx.Request(
            "POST", request.url, json={"requests": first}, headers=request.headers
        )
        done = json.loads(fake.batch(inner).content)["responses"]
        failed = {"id": rest[0]["id"], "status": 503, "headers": {}, "body": None}
        return httpx.Response(200, json={"responses": [*done, failed]})

    return answer


async def test_partly_failed_batch_falls_back_without_writing_twice():
    fake = FakeCreatio()
    who = add(fake, "Contact", Name="Ann")
    fake.faults.append(Fault(lambda r: "$batch" in r.url.path, cut_batch(fake, 3)))
    ops = make(fake)
    request = case_request(who)
    activities = [activity_request(request.key, n=n) for n in range(6)]
    async with ops.client:
        await ops.create_case(request)
        refs = await ops.append_activities(activities)
    assert len(fake.tables["Case"]) == 1 and len(fake.tables["Activity"]) == 6
    # Three landed in the batch; the three missing ones are written one by one.
    assert len(fake.requests_to("POST", "/odata/Activity")) == 3
    assert [r.id for r in refs] == [a.key for a in activities]


async def test_lost_batch_answer_is_checked_before_anything_is_written_again():
    fake = FakeCreatio()
    who = add(fake, "Contact", Name="Ann")
    fake.faults.append(Fault(lambda r: "$batch" in r.url.path, after=httpx.ReadTimeout("lost")))
    ops = make(fake)
    request = case_request(who)
    activities = [activity_request(request.key, n=n) for n in range(3)]
    async with ops.client:
        case = await ops.create_case(request)
        refs = await ops.append_activities(activities)
        # The outbox's retry: every record is looked up by its Id, none written again.
        retried = [replace(a, maybe_written=True) for a in activities]
        again = await ops.create_case(replace(request, maybe_written=True))
        assert await ops.append_activities(retried) == refs
    assert case == again
    assert len(fake.tables["Activity"]) == 3
    assert len(fake.requests_to("POST", "$batch")) == 1
    assert not fake.requests_to("POST", "/odata/Activity")


# -- attachments -----------------------------------------------------------------------------


async def test_upload_attachment_and_cleanup_on_failure():
    fake = FakeCreatio()
    case_id = add(fake, "Case", StatusId=cs.STATUS_NEW)
    ops = make(fake)
    good, bad = str(uuid.uuid4()), str(uuid.uuid4())
    fake.faults.append(
        Fault(
            lambda r: "UploadFile" in r.url.path and bad in str(r.url),
            httpx.Response(400, json={"error": {"message": "File too large"}}),
        )
    )
    async with ops.client:
        assert await ops.upload_attachment(case_id, "a.txt", "text/plain", b"hello", good) == good
        with pytest.raises(PermanentError, match="File too large"):
            await ops.upload_attachment(case_id, "b.bin", "", b"\x00" * 10, bad)
    assert fake.uploads[good] == b"hello"
    row = fake.tables["CaseFile"][good]
    assert (row["CaseId"], row["Size"], row["TypeId"]) == (case_id, 5, cs.FILE_TYPE_FILE)
    assert bad not in fake.tables["CaseFile"]
