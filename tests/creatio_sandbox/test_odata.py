"""OData 4 shapes and status codes, pinned to shared/CREATIO.md."""

from __future__ import annotations

import re
import uuid

import httpx
from casebridge_creatio.sandbox import seed
from conftest import RunningSandbox

SUPERVISOR = seed.SUPERVISOR_CONTACT
CREATED_ON = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z")


def new_case(client: httpx.Client, **values: object) -> dict[str, object]:
    answer = client.post("/0/odata/Case", json={"Subject": "Printer on fire", **values})
    assert answer.status_code == 201, answer.text
    return answer.json()


def activity(case_id: object, **values: object) -> dict[str, object]:
    return {"Title": "Customer wrote", "DueDate": "2024-05-01T10:00:00Z",
            "StatusId": seed.ACTIVITY_STATUS_COMPLETED, "CaseId": case_id, **values}


def test_collection_shape_and_seeded_lookups(session: httpx.Client) -> None:
    answer = session.get("/0/odata/CaseStatus")
    assert answer.status_code == 200
    body = answer.json()
    assert body["@odata.context"].endswith("/0/odata/$metadata#CaseStatus")
    by_name = {row["Name"]: row for row in body["value"]}
    assert by_name["Closed"]["Id"] == "3e7f420c-f46b-1410-fc9a-0050ba5d6c38"
    assert by_name["Closed"]["IsFinal"] is True
    assert by_name["Resolved"]["IsResolved"] is True and by_name["Resolved"]["IsFinal"] is False
    assert by_name["New"]["Id"] == "ae5f2f10-f46b-1410-fd9a-0050ba5d6c38"
    origins = {r["Name"]: r["Id"] for r in session.get("/0/odata/CaseOrigin").json()["value"]}
    assert origins["Email"] == "7f9e1f1e-f46b-1410-3492-0050ba5d6c38" and "SMS" in origins
    types = session.get("/0/odata/EmailType").json()["value"]
    assert {t["Name"]: t["Id"] for t in types}["Outgoing"] == seed.MESSAGE_OUTGOING
    groups = session.get("/0/odata/SysAdminUnit?$filter=Name eq 'Support line 1'").json()
    assert len(groups["value"]) == 1


def test_post_case_returns_201_with_the_whole_record(session: httpx.Client) -> None:
    first = new_case(session, ContactId=SUPERVISOR)
    second = new_case(session)
    assert uuid.UUID(str(first["Id"]))
    assert re.fullmatch(r"SR\d{8}", str(first["Number"]))
    assert int(str(second["Number"])[2:]) == int(str(first["Number"])[2:]) + 1
    assert CREATED_ON.fullmatch(str(first["CreatedOn"]))
    assert CREATED_ON.fullmatch(str(first["RegisteredOn"]))
    assert first["StatusId"] == seed.STATUS_NEW
    assert first["ContactId"] == SUPERVISOR
    assert first["OwnerId"] == "00000000-0000-0000-0000-000000000000"
    assert first["Subject"] == "Printer on fire" and first["Notes"] == ""
    assert first["CreatedById"] == SUPERVISOR


def test_get_one_by_bare_guid_and_404(session: httpx.Client) -> None:
    case = new_case(session)
    answer = session.get(f"/0/odata/Case({case['Id']})")
    assert answer.status_code == 200
    assert answer.json()["Number"] == case["Number"]
    assert answer.json()["@odata.context"].endswith("#Case/$entity")
    missing = session.get(f"/0/odata/Case({uuid.uuid4()})")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"]
    assert session.get("/0/odata/Case(not-a-guid)").status_code == 400


def test_client_given_id_is_honoured_and_a_duplicate_is_an_error(session: httpx.Client) -> None:
    case_id = str(uuid.uuid4())
    assert new_case(session, Id=case_id)["Id"] == case_id
    again = session.post("/0/odata/Case", json={"Id": case_id, "Subject": "again"})
    assert again.status_code == 500
    error = again.json()["error"]
    assert "duplicate key" in error["message"]
    assert "duplicate key" in error["innererror"]["internalexception"]["message"]
    assert len(session.get(f"/0/odata/Case?$filter=Id eq {case_id}").json()["value"]) == 1


def test_patch_and_delete_answer_204(session: httpx.Client) -> None:
    case = new_case(session)
    url = f"/0/odata/Case({case['Id']})"
    patched = session.patch(url, json={"Subject": "Printer fixed", "OwnerId": SUPERVISOR})
    assert patched.status_code == 204 and patched.content == b""
    after = session.get(url).json()
    assert after["Subject"] == "Printer fixed" and after["OwnerId"] == SUPERVISOR
    assert after["ModifiedOn"] >= case["ModifiedOn"]
    assert session.delete(url).status_code == 204
    assert session.get(url).status_code == 404
    assert session.delete(url).status_code == 404
    assert session.patch(url, json={"Subject": "x"}).status_code == 404


def test_unknown_entity_404_unknown_column_400(session: httpx.Client) -> None:
    assert session.get("/0/odata/Caze").status_code == 404
    answer = session.post("/0/odata/Case", json={"Subjekt": "x"})
    assert answer.status_code == 400
    assert "Subjekt" in answer.json()["error"]["message"]
    assert session.get("/0/odata/Case?$select=Subjekt").status_code == 400
    wrong_type = session.post("/0/odata/Case", json={"StatusId": 5})
    assert wrong_type.status_code == 400 and "StatusId" in wrong_type.json()["error"]["message"]


def test_a_case_in_a_final_status_refuses_changes(session: httpx.Client) -> None:
    case = new_case(session)
    url = f"/0/odata/Case({case['Id']})"
    assert session.patch(url, json={"StatusId": seed.STATUS_CLOSED}).status_code == 204
    closed = session.get(url).json()
    assert closed["ClosureDate"] != "0001-01-01T00:00:00Z"
    refused = session.patch(url, json={"StatusId": seed.STATUS_REOPENED})
    assert refused.status_code == 403
    assert "final" in refused.json()["error"]["message"]
    assert session.get(url).json()["StatusId"] == seed.STATUS_CLOSED


def test_activity_required_columns(session: httpx.Client) -> None:
    # Required means required AND without a default: left out, DueDate and StatusId take
    # Creatio's defaults; sent empty, or Title (no default) left out, they are refused.
    case = new_case(session)
    body = activity(case["Id"])
    untitled = {k: v for k, v in body.items() if k != "Title"}
    answer = session.post("/0/odata/Activity", json=untitled)
    assert answer.status_code == 400
    assert answer.json()["error"]["message"] == \
        "Required column(s) Title of 'Activity' must have a value."
    for column in ("DueDate", "StatusId"):
        emptied = {**body, column: None}
        answer = session.post("/0/odata/Activity", json=emptied)
        assert answer.status_code == 400
        assert column in answer.json()["error"]["message"]
        partial = {k: v for k, v in body.items() if k != column}
        assert session.post("/0/odata/Activity", json=partial).status_code == 201
    assert session.post("/0/odata/Activity", json=body).status_code == 201


def test_activity_defaults_are_creatios(session: httpx.Client) -> None:
    case = new_case(session)
    answer = session.post("/0/odata/Activity", json={"Title": "Call back", "CaseId": case["Id"]})
    assert answer.status_code == 201, answer.text
    row = answer.json()
    assert row["StatusId"] == seed.ACTIVITY_STATUS_NOT_STARTED
    assert row["PriorityId"] == seed.ACTIVITY_PRIORITY_MEDIUM
    assert row["ActivityCategoryId"] == seed.ACTIVITY_CATEGORY_TODO
    assert row["TypeId"] == seed.ACTIVITY_TYPE_TASK
    assert row["OwnerId"] == row["AuthorId"] == SUPERVISOR
    assert CREATED_ON.fullmatch(row["StartDate"]) and row["StartDate"] == row["DueDate"]
    # Given values win over the defaults, and an update fills nothing in.
    given = session.post("/0/odata/Activity", json={
        "Title": "Done", "StatusId": seed.ACTIVITY_STATUS_COMPLETED,
        "TypeId": seed.ACTIVITY_TYPE_CALL, "OwnerId": seed.AGENT_CONTACT}).json()
    assert given["StatusId"] == seed.ACTIVITY_STATUS_COMPLETED
    assert given["TypeId"] == seed.ACTIVITY_TYPE_CALL
    assert given["OwnerId"] == seed.AGENT_CONTACT and given["AuthorId"] == SUPERVISOR


def test_other_entities_take_creatios_defaults(session: httpx.Client) -> None:
    contact = session.post("/0/odata/Contact", json={"Name": "Anna"}).json()
    assert contact["OwnerId"] == SUPERVISOR
    case = new_case(session, ContactId=contact["Id"])
    assert case["StatusId"] == seed.STATUS_NEW
    assert case["PriorityId"] == seed.PRIORITY_MEDIUM
    assert re.fullmatch(r"SR\d{8}", case["Number"]) and CREATED_ON.fullmatch(case["RegisteredOn"])
    file_row = session.post("/0/odata/CaseFile", json={"Name": "a.txt", "CaseId": case["Id"]})
    assert file_row.status_code == 201, file_row.text
    assert file_row.json()["TypeId"] == seed.FILE_TYPE_FILE and file_row.json()["Version"] == 1
    comm = session.post("/0/odata/ContactCommunication", json={
        "ContactId": contact["Id"], "CommunicationTypeId": seed.COMMUNICATION_MOBILE,
        "Number": "+1 555 0100"}).json()
    assert comm["Primary"] is False and comm["SearchNumber"] == "00105551"
    unit = session.post("/0/odata/SysAdminUnit", json={"Name": "Support line 3"}).json()
    assert unit["Active"] is True
    # A required column without a default is still refused.
    nameless = session.post("/0/odata/Contact", json={"Email": "x@example.com"})
    assert nameless.status_code == 400
    assert nameless.json()["error"]["message"] == \
        "Required column(s) Name of 'Contact' must have a value."


def test_unknown_lookup_value_is_a_foreign_key_error(session: httpx.Client) -> None:
    answer = session.post("/0/odata/Case", json={"StatusId": str(uuid.uuid4())})
    assert answer.status_code == 500
    assert "FOREIGN KEY" in answer.json()["error"]["message"]


def test_contact_email_and_phone_appear_as_communications(session: httpx.Client) -> None:
    contact = session.post("/0/odata/Contact", json={
        "Name": "Ada", "Email": "ada@example.com", "MobilePhone": "+1 (415) 555-0100"}).json()
    rows = session.get("/0/odata/ContactCommunication",
                       params={"$filter": f"ContactId eq {contact['Id']}"}).json()["value"]
    numbers = {r["CommunicationTypeId"]: r for r in rows}
    assert numbers[seed.COMMUNICATION_EMAIL]["Number"] == "ada@example.com"
    assert numbers[seed.COMMUNICATION_MOBILE]["SearchNumber"] == "14155550100"[::-1]


def test_select_expand_count_and_property_value(session: httpx.Client) -> None:
    case = new_case(session, ContactId=SUPERVISOR)
    answer = session.get(f"/0/odata/Case({case['Id']})",
                         params={"$select": "Number,StatusId", "$expand": "Status,Contact"})
    body = answer.json()
    assert set(body) == {"@odata.context", "Number", "StatusId", "Status", "Contact"}
    assert body["Status"]["Name"] == "New" and body["Contact"]["Name"] == "Supervisor"
    narrow = session.get("/0/odata/Case", params={
        "$expand": "Status($select=Name,IsFinal)", "$count": "true", "$top": "0"}).json()
    assert narrow["@odata.count"] >= 1 and narrow["value"] == []
    one = session.get("/0/odata/Case", params={"$expand": "Status($select=Name,IsFinal)"}).json()
    assert set(one["value"][0]["Status"]) == {"Name", "IsFinal"}
    value = session.get(f"/0/odata/Case({case['Id']})/Subject").json()
    assert value["value"] == "Printer on fire"
    assert session.get("/0/odata/Case?$expand=Nothing").status_code == 400
    assert session.get("/0/odata/Case?$bogus=1").status_code == 400
    assert session.get("/0/odata/$metadata").text.startswith("<?xml")


def test_orderby_top_skip_page_through_cases(session: httpx.Client) -> None:
    subjects = ["delta", "alpha", "charlie", "bravo", "echo"]
    for subject in subjects:
        new_case(session, Subject=subject)
    pages = []
    for skip in (0, 2, 4):
        page = session.get("/0/odata/Case", params={"$orderby": "Subject asc", "$top": "2",
                                                    "$skip": str(skip), "$select": "Subject"})
        pages += [row["Subject"] for row in page.json()["value"]]
    assert pages == sorted(subjects)
    desc = session.get("/0/odata/Case", params={"$orderby": "StatusId, Subject desc"}).json()
    assert [r["Subject"] for r in desc["value"]] == sorted(subjects, reverse=True)
    assert session.get("/0/odata/Case?$top=-1").status_code == 400


def test_activity_filters_by_case_and_direction(session: httpx.Client) -> None:
    case = new_case(session)
    other = new_case(session)
    session.post("/0/odata/Activity",
                 json=activity(case["Id"], MessageTypeId=seed.MESSAGE_INCOMING))
    session.post("/0/odata/Activity",
                 json=activity(case["Id"], MessageTypeId=seed.MESSAGE_OUTGOING))
    session.post("/0/odata/Activity", json=activity(other["Id"]))
    found = session.get("/0/odata/Activity", params={
        "$filter": f"Case/Id eq {case['Id']} and MessageType/Name eq 'Outgoing'"}).json()
    assert len(found["value"]) == 1
    assert found["value"][0]["MessageTypeId"] == seed.MESSAGE_OUTGOING


def test_net8_prefix_serves_odata_without_0(start_sandbox: object) -> None:
    running = start_sandbox(path_prefix="")  # type: ignore[operator]
    client = running.login()
    assert client.get("/odata/Case").status_code == 200
    assert client.get("/0/odata/Case").status_code == 404
    client.close()


def test_service_document_lists_entity_sets(sandbox: RunningSandbox) -> None:
    client = sandbox.login()
    names = {e["name"] for e in client.get("/0/odata/").json()["value"]}
    assert {"Case", "Activity", "Contact", "CaseFile", "SysAdminUnit"} <= names
    client.close()


def test_unknown_property_is_refused_in_creatios_shape_alone_and_in_a_batch(
    session: httpx.Client,
) -> None:
    message = ("The property 'ProductName' does not exist on type "
               "'Terrasoft.Configuration.Case'. Make sure to only use property names that are "
               "defined by the type.")
    answer = session.post("/0/odata/Case", json={"Subject": "x", "ProductName": "X200"})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "BadRequest" and error["message"] == message
    assert error["innererror"]["internalexception"]["message"] == message
    batch = session.post("/0/odata/$batch", json={"requests": [
        {"id": "1", "method": "POST", "url": "Case",
         "body": {"Subject": "x", "ProductName": "X200"}}]}).json()
    [refused] = batch["responses"]
    assert refused["status"] == 400 and refused["body"]["error"]["message"] == message
    assert session.get("/0/odata/Case", params={"$count": "true", "$top": "0"}).json()[
        "@odata.count"] == 0
