"""Business processes: webhook posts for new activities and closed cases."""

from __future__ import annotations

import uuid

from casebridge.secrets import Secret
from casebridge_creatio.sandbox import seed
from conftest import Receiver, StartSandbox


def test_new_activity_and_case_closed_reach_the_webhook(start_sandbox: StartSandbox,
                                                        receiver: Receiver) -> None:
    running = start_sandbox(webhook_url=receiver.url, webhook_secret=Secret("s3cret"),
                            webhook_header="X-Hook-Secret")
    client = running.login()
    case = client.post("/0/odata/Case", json={"Subject": "help"}).json()
    act = client.post("/0/odata/Activity", json={
        "Title": "hi", "DueDate": "2024-01-01T00:00:00Z",
        "StatusId": seed.ACTIVITY_STATUS_COMPLETED, "CaseId": case["Id"]}).json()
    client.post("/0/odata/Activity", json={
        "Title": "not on a case", "DueDate": "2024-01-01T00:00:00Z",
        "StatusId": seed.ACTIVITY_STATUS_COMPLETED})
    client.patch(f"/0/odata/Case({case['Id']})", json={"StatusId": seed.STATUS_CLOSED})
    posts = receiver.wait_for(2)
    headers, first = posts[0]
    assert first == {"event_type": "new_activity", "caseId": case["Id"], "activityId": act["Id"]}
    assert headers["x-hook-secret"] == "s3cret"
    assert posts[1][1] == {"event_type": "case_closed", "caseId": case["Id"],
                           "statusId": seed.STATUS_CLOSED}
    client.close()


def test_failed_delivery_is_retried(start_sandbox: StartSandbox, receiver: Receiver) -> None:
    receiver.statuses = [503, 500]
    running = start_sandbox(webhook_url=receiver.url, webhook_backoff_s=0.01,
                            processes=frozenset({"new_activity", "case_status_changed"}))
    client = running.login()
    case_id = str(uuid.uuid4())
    client.post("/0/odata/$batch", json={"requests": [
        {"id": "1", "method": "POST", "url": "Case", "body": {"Id": case_id}},
        {"id": "2", "method": "POST", "url": "Activity", "body": {
            "Title": "x", "DueDate": "2024-01-01T00:00:00Z",
            "StatusId": seed.ACTIVITY_STATUS_COMPLETED, "CaseId": case_id}}]})
    client.patch(f"/0/odata/Case({case_id})", json={"StatusId": seed.STATUS_IN_PROGRESS})
    posts = receiver.wait_for(4)
    bodies = [body for _, body in posts]
    assert [b["event_type"] for b in bodies] == ["new_activity"] * 3 + ["case_status_changed"]
    assert bodies[3]["previousStatusId"] == seed.STATUS_NEW
    deliveries = client.get("/sandbox/admin/webhooks").json()["deliveries"]
    assert deliveries[0]["attempts"] == 3 and deliveries[0]["delivered"] is True
    client.close()


def test_rolled_back_writes_fire_no_process(start_sandbox: StartSandbox,
                                            receiver: Receiver) -> None:
    running = start_sandbox(webhook_url=receiver.url)
    client = running.login()
    case = client.post("/0/odata/Case", json={"Subject": "s"}).json()
    activity = {"Title": "x", "DueDate": "2024-01-01T00:00:00Z",
                "StatusId": seed.ACTIVITY_STATUS_COMPLETED, "CaseId": case["Id"]}
    client.post("/0/odata/$batch", json={"requests": [
        {"id": "1", "method": "POST", "url": "Activity", "body": activity,
         "atomicityGroup": "g"},
        {"id": "2", "method": "POST", "url": "Activity", "body": {"Body": "no title"},
         "atomicityGroup": "g"}]})
    client.post("/0/odata/Activity", json={**activity, "Title": "kept"})
    posts = receiver.wait_for(1)
    kept = client.get("/0/odata/Activity", params={"$filter": "Title eq 'kept'"}).json()
    assert posts[0][1]["activityId"] == kept["value"][0]["Id"]
    client.close()
