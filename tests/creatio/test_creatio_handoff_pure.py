"""The pure parts of the two-round-trip handoff, hammered by hypothesis: the contact's
records, the read batch, and how the answers name the contact."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from casebridge.model import Contact, HandoffRequest, Session, SessionStatus
from casebridge_creatio.contacts import contact_own_id, contact_records
from casebridge_creatio.handoff import Reads, found_contact, read_requests
from casebridge_creatio.sandbox.batch import without_id
from hypothesis import given
from hypothesis import strategies as st

emails = st.lists(st.emails(), max_size=3, unique=True)
phones = st.lists(st.from_regex(r"\+1[2-9]\d{9}", fullmatch=True), max_size=3, unique=True)
contacts = st.builds(
    Contact,
    id=st.uuids().map(str),
    name=st.text(max_size=300),
    emails=emails.map(tuple),
    phones=phones.map(tuple),
)
GUIDS = st.uuids().map(str)


async def _never(*_: object) -> list:
    raise AssertionError("not called by pure code")


def request_for(contact: Contact, case_id: str = "", maybe_written: bool = False):
    session = Session("s", "loop", contact, SessionStatus.HANDED_OFF)
    return HandoffRequest(
        key=contact_own_id(Contact("case")),
        session=session,
        contact=contact,
        describe=_never,
        activities=_never,
        case_id=case_id,
        maybe_written=maybe_written,
    )


@given(contacts)
def test_contact_records_name_the_contact_and_its_further_addresses(contact) -> None:
    (entity, body), *rest = contact_records(contact)
    assert entity == "Contact" and body["Id"] == contact_own_id(contact)
    assert 0 < len(body["Name"]) <= 250
    assert body.get("Email") == (contact.emails[0] if contact.emails else None)
    assert body.get("MobilePhone") == (contact.phones[0] if contact.phones else None)
    numbers = [row["Number"] for kind, row in rest]
    assert numbers == [*contact.emails[1:], *contact.phones[1:]]
    assert all(
        kind == "ContactCommunication" and row["ContactId"] == body["Id"] for kind, row in rest
    )
    assert len({row["Id"] for _, row in rest}) == len(rest)


@given(
    contacts,
    st.lists(GUIDS, max_size=4),
    st.sampled_from(["", "x"]),
    st.booleans(),
    st.sampled_from(["", "known"]),
)
def test_read_batch_is_gets_only_with_unique_ids(contact, open_ids, case, retry, known):
    if known:
        contact = Contact(
            contact.id,
            contact.name,
            contact.emails,
            contact.phones,
            crm_id=contact_own_id(Contact("other")),
        )
    case_id = contact_own_id(Contact("earlier")) if case else ""
    reads, covered = read_requests(request_for(contact, case_id, retry), open_ids)
    ids = [r.id for r in reads.requests]
    assert len(ids) == len(set(ids)) <= 100
    assert all(r.method == "GET" and r.body is None for r in reads.requests)
    for r in reads.requests:
        query = parse_qs(urlsplit(r.url).query)
        assert set(query) <= {"$filter", "$select", "$orderby", "$top"}
    assert ("cases" in ids) == bool(open_ids)
    assert ("mine" in ids) == bool(case_id or retry)
    assert contact_own_id(contact) in covered


@given(contacts, st.lists(st.sampled_from(["own", "email", "comm", "none"]), max_size=3))
def test_found_contact_prefers_its_own_id_then_email_then_communications(contact, found):
    reads = Reads()
    own = contact_own_id(contact)
    by_email, by_comm = contact_own_id(Contact("e")), contact_own_id(Contact("c"))
    reads.rows = {
        "own": [{"Id": own}] if "own" in found else [],
        "email": [{"Id": by_email}] if "email" in found and contact.emails else [],
        "comm": [{"ContactId": by_comm}] if "comm" in found and contact.emails else [],
    }
    crm_id, how = found_contact(reads, contact)
    if "own" in found:
        assert (crm_id, how) == (own, "id")
    elif reads.rows["email"]:
        assert (crm_id, how) == (by_email, "email")
    elif reads.rows["comm"]:
        assert (crm_id, how) == (by_comm, "communication")
    else:
        assert (crm_id, how) == ("", "")


@given(
    st.dictionaries(st.sampled_from(["Id", "Title", "CaseId"]), st.text(max_size=20)), st.booleans()
)
def test_without_id_drops_only_the_id(body, as_text) -> None:
    sent = json.dumps(body) if as_text else body
    stripped = without_id(sent)
    if "Id" in body:
        assert stripped == {k: v for k, v in body.items() if k != "Id"}
    else:
        assert stripped is sent
