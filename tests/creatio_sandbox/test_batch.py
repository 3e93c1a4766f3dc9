"""$batch: order, stop at first failure, continue-on-error, atomicity groups, limits."""

from __future__ import annotations

import uuid

import httpx
from casebridge_creatio.sandbox import seed


def case_request(rid: str, case_id: str, **extra: object) -> dict[str, object]:
    return {"id": rid, "method": "POST", "url": "Case",
            "body": {"Id": case_id, "Subject": f"case {rid}"},
            "headers": {"Content-Type": "application/json"}, **extra}


def activity_request(rid: str, case_id: str, **extra: object) -> dict[str, object]:
    return {"id": rid, "method": "POST", "url": "/0/odata/Activity",
            "body": {"Title": "msg", "DueDate": "2024-01-01T00:00:00Z",
                     "StatusId": seed.ACTIVITY_STATUS_COMPLETED, "CaseId": case_id},
            "headers": {"Content-Type": "application/json"}, **extra}


def count(client: httpx.Client, entity: str, expression: str) -> int:
    return len(client.get(f"/0/odata/{entity}", params={"$filter": expression}).json()["value"])


def test_case_and_its_activities_in_one_batch(session: httpx.Client) -> None:
    case_id = str(uuid.uuid4())
    answer = session.post("/0/odata/$batch", json={"requests": [
        case_request("1", case_id), activity_request("2", case_id),
        activity_request("3", case_id),
        {"id": "4", "method": "GET", "url": f"Case({case_id})?$select=Number"}]})
    assert answer.status_code == 200
    responses = answer.json()["responses"]
    assert [r["id"] for r in responses] == ["1", "2", "3", "4"]
    assert [r["status"] for r in responses] == [201, 201, 201, 200]
    assert responses[0]["body"]["Id"] == case_id
    assert responses[3]["body"]["Number"] == responses[0]["body"]["Number"]
    assert count(session, "Activity", f"CaseId eq {case_id}") == 2


def test_stops_at_the_first_failure(session: httpx.Client) -> None:
    case_id = str(uuid.uuid4())
    answer = session.post("/0/odata/$batch", json={"requests": [
        case_request("1", case_id),
        {"id": "2", "method": "POST", "url": "Case", "body": {"Bogus": 1}},
        activity_request("3", case_id)]})
    responses = answer.json()["responses"]
    assert [r["status"] for r in responses] == [201, 400]
    assert "Bogus" in responses[1]["body"]["error"]["message"]
    assert count(session, "Case", f"Id eq {case_id}") == 1
    assert count(session, "Activity", f"CaseId eq {case_id}") == 0


def test_continue_on_error_answers_every_request(session: httpx.Client) -> None:
    case_id = str(uuid.uuid4())
    answer = session.post("/0/odata/$batch", headers={"Prefer": "odata.continue-on-error"},
                          json={"requests": [
                              case_request("1", case_id), case_request("2", case_id),
                              activity_request("3", case_id)]})
    assert [r["status"] for r in answer.json()["responses"]] == [201, 500, 201]


def test_failed_atomicity_group_is_rolled_back(session: httpx.Client) -> None:
    kept, lost = str(uuid.uuid4()), str(uuid.uuid4())
    answer = session.post("/0/odata/$batch", headers={"Prefer": "continue-on-error"},
                          json={"requests": [
                              case_request("1", kept),
                              case_request("2", lost, atomicityGroup="g"),
                              activity_request("3", lost, atomicityGroup="g"),
                              {"id": "4", "method": "POST", "url": "Activity",
                               "body": {"Body": "no title"}, "atomicityGroup": "g"},
                              activity_request("5", lost, atomicityGroup="g"),
                              activity_request("6", kept)]})
    statuses = [r["status"] for r in answer.json()["responses"]]
    assert statuses == [201, 424, 424, 400, 424, 201]
    assert count(session, "Case", f"Id eq {lost}") == 0
    assert count(session, "Activity", f"CaseId eq {lost}") == 0
    assert count(session, "Activity", f"CaseId eq {kept}") == 1


def test_batch_limits_and_shape_errors(session: httpx.Client) -> None:
    many = [{"id": str(i), "method": "GET", "url": "CaseStatus"} for i in range(101)]
    too_many = session.post("/0/odata/$batch", json={"requests": many})
    assert too_many.status_code == 400 and "100" in too_many.json()["error"]["message"]
    assert session.post("/0/odata/$batch", json={"requests": many[:100]}).status_code == 200
    assert session.post("/0/odata/$batch", json={"nope": []}).status_code == 400
    assert session.post("/0/odata/$batch", content=b"{").status_code == 400
    split = session.post("/0/odata/$batch", json={"requests": [
        {"id": "1", "method": "GET", "url": "Case", "atomicityGroup": "a"},
        {"id": "2", "method": "GET", "url": "Case"},
        {"id": "3", "method": "GET", "url": "Case", "atomicityGroup": "a"}]})
    assert split.status_code == 400


def test_batch_needs_bpmcsrf(session: httpx.Client) -> None:
    csrf = session.headers.pop("BPMCSRF")
    body = {"requests": [{"id": "1", "method": "GET", "url": "Case"}]}
    assert session.post("/0/odata/$batch", json=body).status_code == 401
    assert session.post("/0/odata/$batch", json=body, headers={"BPMCSRF": csrf}
                        ).status_code == 200
