"""Email end to end, through real processes on loopback: SMTP in, a Creatio case, a rep's
reply out to the customer's mail server, threaded. Each test has its own customer address,
so the tests share one deployment without seeing each other's cases."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from deployment import OWNER_ID, SUPPORT, Deployment, session_link, wait_for
from selectolax.lexbor import LexborHTMLParser

PDF = b"%PDF-1.4\n% a small invoice\n" + bytes(range(256)) * 4


def customer_mail(sender: str, subject: str, body: str, msg_id: str, name: str = "Ann Example",
                  in_reply_to: str = "") -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"{name} <{sender}>"
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Message-ID"] = f"<{msg_id}@customer.example>"
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    message.set_content(body)
    return message


def one_case(deployment: Deployment, sender: str) -> dict[str, Any]:
    [case] = wait_for(lambda: deployment.cases_for(sender), what=f"the case of {sender}")
    return case


def activities(deployment: Deployment, case_id: str, count: int) -> list[dict[str, Any]]:
    """The case's activities once there are ``count`` of them (and not more)."""
    rows = wait_for(lambda: (lambda a: a if len(a) >= count else None)(
        deployment.activities(case_id)), what=f"{count} activities on case {case_id}")
    assert len(rows) == count, [a["Title"] for a in rows]
    return rows


def originals(page: str) -> list[str]:
    """The "Original message" shown folded under each trimmed message of the session page."""
    return [node.text() for node in LexborHTMLParser(page).css("article.msg details pre")]


def transcript(page: str) -> list[tuple[str, str]]:
    """The session page's messages as (author class, text)."""
    tree = LexborHTMLParser(page)
    return [(node.attributes.get("class", "").removeprefix("msg ").strip(),
             (node.css_first(".text").text() if node.css_first(".text") else ""))
            for node in tree.css("article.msg")]


def test_policy_handoff_writes_one_complete_case(deployment: Deployment) -> None:
    sender = "ann@customer.example"
    first = customer_mail(
        sender, "Printer broken",
        "My printer prints blank pages since Monday.\n\n"
        "On Mon, 1 Jan 2026, Bob <bob@example.org> wrote:\n> an old quoted line\n",
        "ann-1")
    first.add_attachment(PDF, maintype="application", subtype="pdf", filename="invoice.pdf")
    deployment.send_email(first)
    deployment.send_email(customer_mail(
        sender, "Re: Printer broken", "I tried a new cartridge, still blank.\n", "ann-2",
        in_reply_to="<ann-1@customer.example>"))
    deployment.send_email(customer_mail(
        sender, "Re: Printer broken",
        "This is urgent now. Can I speak to a person?\n\n> I tried a new cartridge\n",
        "ann-3", in_reply_to="<ann-2@customer.example>"))

    case = one_case(deployment, sender)
    symptoms = case["Symptoms"]
    # The default summary is the description: who, why handed off, their own words.
    assert "Ann Example (ann@customer.example) wrote by email" in symptoms
    assert "handed off because the customer asked for a person ('speak to a person')" in symptoms
    assert "My printer prints blank pages since Monday." in symptoms
    assert "Latest message:\nThis is urgent now." in symptoms
    assert case["Subject"] == "Printer broken"
    assert case["OwnerId"].lower() == OWNER_ID
    assert case["PriorityId"].lower() == deployment.lookup_id("CasePriority", "High")

    first_activity, second, third = activities(deployment, case["Id"], 3)
    assert "My printer prints blank pages since Monday." in first_activity["Body"]
    assert "I tried a new cartridge, still blank." in second["Body"]
    assert "This is urgent now." in third["Body"]
    for activity in (first_activity, second, third):
        assert "an old quoted line" not in activity["Body"]
        assert "> I tried a new cartridge" not in activity["Body"]
    assert "invoice.pdf" in first_activity["Body"]
    [uploaded] = wait_for(lambda: deployment.case_files(case["Id"]), what="the CaseFile")
    assert uploaded["Name"] == "invoice.pdf" and uploaded["Size"] == len(PDF)

    link = session_link(first_activity["Body"])
    assert link is not None
    assert session_link(second["Body"]) is None and session_link(third["Body"]) is None
    page = httpx.get(link, timeout=10)
    assert page.status_code == 200
    texts = [text for _, text in transcript(page.text)]
    assert any("My printer prints blank pages since Monday." in t for t in texts)
    assert any("This is urgent now." in t for t in texts)
    # Only the messages that lost quoted text offer the original.
    [first_original, third_original] = originals(page.text)
    assert "an old quoted line" in first_original
    assert "> I tried a new cartridge" in third_original
    # The link is signed: the same page without its signature is refused.
    assert httpx.get(link.split("?")[0], timeout=10).status_code == 403


@pytest.mark.parametrize("through", ["cli", "api"])
def test_manual_handoff(deployment: Deployment, through: str) -> None:
    sender = f"carol-{through}@customer.example"
    deployment.send_email(customer_mail(sender, "Invoice question",
                                        "Why was I billed twice in March?\n", f"carol-{through}",
                                        name="Carol Example"))
    [session] = wait_for(lambda: deployment.sessions(sender), what="Carol's session")
    assert session["status"] == "assistant" and session["case"] == "-"
    assert deployment.cases_for(sender) == []

    if through == "cli":
        done = deployment.cli("handoff", session["id"], "--reason", "billing needs a human")
        assert done.returncode == 0, done.stderr
    else:
        path = f"/api/sessions/{session['id']}/handoff"
        refused = httpx.post(deployment.bridge_url + path, json={"reason": "x"}, timeout=10)
        assert refused.status_code == 401
        answer = deployment.api("POST", path, json={"reason": "billing needs a human"})
        assert answer.status_code == 202, answer.text

    case = one_case(deployment, sender)
    assert "handed off because billing needs a human." in case["Symptoms"]
    assert "Why was I billed twice in March?" in case["Symptoms"]
    assert case["OwnerId"].lower() == OWNER_ID
    # No "urgent" in what Carol wrote: the rule leaves the sandbox's default priority.
    assert case["PriorityId"].lower() != deployment.lookup_id("CasePriority", "High")
    [activity] = activities(deployment, case["Id"], 1)
    assert "Why was I billed twice in March?" in activity["Body"]
    page = httpx.get(session_link(activity["Body"]) or "", timeout=10)
    assert page.status_code == 200 and "Why was I billed twice in March?" in page.text
    assert originals(page.text) == []  # nothing was trimmed: no "Original message" to unfold
    [after] = deployment.sessions(sender)
    assert after["status"] == "handed_off"


def test_rep_reply_reaches_the_inbox_threaded_and_shows_on_the_session_page(
    deployment: Deployment,
) -> None:
    sender = "bob@customer.example"
    deployment.send_email(customer_mail(sender, "Login fails",
                                        "I want to speak to a person about my login.\n",
                                        "bob-1", name="Bob Example"))
    case = one_case(deployment, sender)
    [activity] = activities(deployment, case["Id"], 1)

    deployment.rep_reply(case["Id"], "Please reset your password from the login page.")
    [reply] = wait_for(lambda: deployment.sink.to(sender), what="the reply in the inbox")
    assert reply["In-Reply-To"] == "<bob-1@customer.example>"
    assert "<bob-1@customer.example>" in reply["References"].split()
    assert reply["Subject"] == "Re: Login fails"
    assert reply["To"].addresses[0].addr_spec == sender
    body = reply.get_body(("plain",)).get_content()
    assert "Please reset your password from the login page." in body

    page = httpx.get(session_link(activity["Body"]) or "", timeout=10)
    assert ("agent", "Please reset your password from the login page.") in [
        (author, " ".join(text.split())) for author, text in transcript(page.text)]


def test_same_contact_appends_until_the_case_is_closed(deployment: Deployment) -> None:
    sender = "dave@customer.example"
    deployment.send_email(customer_mail(sender, "Parcel missing",
                                        "My parcel never came. Let me speak to a person.\n",
                                        "dave-1", name="Dave Example"))
    case = one_case(deployment, sender)
    activities(deployment, case["Id"], 1)

    # A new message, not a reply in the thread: still the same contact's open case.
    deployment.send_email(customer_mail(sender, "Tracking number",
                                        "The tracking number is 0042.\n", "dave-2",
                                        name="Dave Example"))
    _, appended = activities(deployment, case["Id"], 2)
    assert "The tracking number is 0042." in appended["Body"]
    assert session_link(appended["Body"]) is None
    assert [c["Id"] for c in deployment.cases_for(sender)] == [case["Id"]]

    deployment.close_case(case["Id"])
    wait_for(lambda: [s["status"] for s in deployment.sessions(sender)] == ["closed"],
             what="Dave's session to close with its case")
    deployment.send_email(customer_mail(sender, "Parcel missing again",
                                        "Another parcel is missing; speak to a person please.\n",
                                        "dave-3", name="Dave Example"))
    old, new = wait_for(lambda: (lambda c: c if len(c) == 2 else None)(
        deployment.cases_for(sender)), what="Dave's second case")
    assert old["Id"] == case["Id"] and new["Id"] != case["Id"]
    assert "Another parcel is missing" in new["Symptoms"]
    [fresh] = activities(deployment, new["Id"], 1)
    assert session_link(fresh["Body"]) is not None
    assert len(deployment.activities(case["Id"])) == 2
