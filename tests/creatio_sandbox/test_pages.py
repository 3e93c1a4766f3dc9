"""The case pages: list, detail with sanitized bodies, reply and close forms."""

from __future__ import annotations

from casebridge_creatio.sandbox import seed
from conftest import Receiver, StartSandbox


def test_case_pages_reply_and_close(start_sandbox: StartSandbox, receiver: Receiver) -> None:
    running = start_sandbox(webhook_url=receiver.url)
    api = running.login()
    contact = api.post("/0/odata/Contact", json={"Name": "Ada <b>Lovelace</b>",
                                                 "Email": "ada@example.com"}).json()
    case = api.post("/0/odata/Case", json={
        "Subject": "Engine <script>alert(1)</script>", "ContactId": contact["Id"],
        "Symptoms": "Summary: it <i>breaks</i>"}).json()
    base = {"DueDate": "2024-01-01T00:00:00Z", "StatusId": seed.ACTIVITY_STATUS_COMPLETED,
            "CaseId": case["Id"], "TypeId": seed.ACTIVITY_TYPE_EMAIL}
    api.post("/0/odata/Activity", json={**base, "Title": "html", "IsHtmlBody": True,
                                        "Body": "<p>Hi <img src=x onerror=alert(2)>"
                                                "<script>alert(3)</script></p>"})
    api.post("/0/odata/Activity", json={**base, "Title": "text", "Body": "a < b & <c>"})
    receiver.wait_for(2)

    pages = running.client()
    listing = pages.get("/sandbox/cases")
    assert listing.status_code == 200
    assert case["Number"] in listing.text and "Ada &lt;b&gt;Lovelace" in listing.text
    assert "<script>alert(1)" not in listing.text
    assert pages.get("/", follow_redirects=True).url.path == "/sandbox/cases"

    detail = pages.get(f"/sandbox/cases/{case['Id']}").text
    assert "Summary: it &lt;i&gt;breaks&lt;/i&gt;" in detail
    assert "onerror" not in detail and "alert(3)" not in detail and "<p>Hi" in detail
    assert "a &lt; b &amp; &lt;c&gt;" in detail
    assert detail.index(">html<") < detail.index(">text<")

    sent = pages.post(f"/sandbox/cases/{case['Id']}/reply",
                      data={"body": "Fixed it.\nBye <3"}, follow_redirects=True)
    assert sent.status_code == 200 and "Fixed it.<br>Bye &lt;3" in sent.text
    replies = api.get("/0/odata/Activity", params={
        "$filter": f"CaseId eq {case['Id']} and MessageTypeId eq {seed.MESSAGE_OUTGOING}"}
    ).json()["value"]
    assert len(replies) == 1
    assert replies[0]["AuthorId"] == seed.AGENT_CONTACT
    assert replies[0]["CreatedById"] == seed.AGENT_CONTACT
    assert replies[0]["Recepient"] == "ada@example.com"
    posts = receiver.wait_for(3)
    assert posts[2][1] == {"event_type": "new_activity", "caseId": case["Id"],
                           "activityId": replies[0]["Id"]}

    closed = pages.post(f"/sandbox/cases/{case['Id']}/close", follow_redirects=True)
    assert "Case closed." in closed.text and "Send reply" not in closed.text
    assert receiver.wait_for(4)[3][1]["event_type"] == "case_closed"
    again = pages.post(f"/sandbox/cases/{case['Id']}/close", follow_redirects=True)
    assert "final status" in again.text
    assert pages.get("/sandbox/cases/00000000-0000-0000-0000-000000000001").status_code == 404
    api.close()
    pages.close()


def test_the_shell_path_answers_with_a_page_that_opens_the_case(
    start_sandbox: StartSandbox,
) -> None:
    # The fragment never reaches the server: the page's script reads it (the browser walk in
    # tests/e2e/test_e2e_newcomer.py follows such a link to the case page).
    pages = start_sandbox().client()
    for path in ("/0/Shell/", "/0/Shell"):
        shell = pages.get(path)
        assert shell.status_code == 200, path
        assert "location.hash" in shell.text and '"/sandbox/cases/"' in shell.text
