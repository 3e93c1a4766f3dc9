"""Email end to end, through real processes on loopback: SMTP in, a Creatio case, a rep's
reply out to the customer's mail server, threaded."""

from __future__ import annotations

import re
from email.message import EmailMessage

import httpx
from deployment import OWNER_ID, SUPPORT, Deployment, wait_for


def customer_mail(sender: str, subject: str, body: str, msg_id: str,
                  in_reply_to: str = "") -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Ann Example <{sender}>"
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Message-ID"] = f"<{msg_id}@customer.example>"
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    message.set_content(body)
    return message


def test_email_handoff_case_reply_and_session_page(deployment: Deployment) -> None:
    sender = "ann@customer.example"
    body = ("My printer is urgent and broken. Can I speak to a person?\n\n"
            "On Mon, 1 Jan 2026, Bob <bob@example.org> wrote:\n> an old quoted line\n")
    deployment.send_email(customer_mail(sender, "Printer broken", body, "e2e-1"))

    [case] = wait_for(lambda: deployment.cases(), what="a case")
    assert "Ann Example" in case["Symptoms"] and "speak to a person" in case["Symptoms"]
    assert case["OwnerId"].lower() == OWNER_ID
    [activity] = wait_for(lambda: deployment.activities(case["Id"]), what="the activity")
    assert "My printer is urgent and broken." in activity["Body"]
    assert "an old quoted line" not in activity["Body"]
    link = re.search(r'https?://[^"\s<>]+/sessions/[^"\s<>]+', activity["Body"]).group(0)
    page = httpx.get(link.replace("&amp;", "&"), timeout=10)
    assert page.status_code == 200 and "My printer is urgent and broken." in page.text

    deployment.rep_reply(case["Id"], "We are sending a technician.")
    [reply] = wait_for(lambda: deployment.sink.to(sender), what="the reply in the inbox")
    assert reply["In-Reply-To"] == "<e2e-1@customer.example>"
    assert reply["Subject"] == "Re: Printer broken"
    assert "We are sending a technician." in reply.get_body(("plain",)).get_content()
