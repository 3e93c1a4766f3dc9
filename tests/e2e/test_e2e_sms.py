"""SMS end to end through the sandbox provider: signed inbound webhooks, a Creatio case that
carries the customer's number, STOP, and a rep's long reply split into the right number of
segments. Each test texts from its own number."""

from __future__ import annotations

import math
from typing import Any

import httpx
from casebridge_sms.segments import segment
from casebridge_sms.signature import compute_signature
from deployment import OUR_NUMBER, SMS_TOKEN, Deployment, session_link, wait_for


def one_case(deployment: Deployment, number: str) -> dict[str, Any]:
    [case] = wait_for(lambda: deployment.cases_for(number), what=f"the case of {number}")
    return case


def activities(deployment: Deployment, case_id: str, count: int) -> list[dict[str, Any]]:
    """The case's activities once there are ``count`` of them (and not more)."""
    rows = wait_for(lambda: (lambda a: a if len(a) >= count else None)(
        deployment.activities(case_id)), what=f"{count} activities on case {case_id}")
    assert len(rows) == count, [a["Body"][:80] for a in rows]
    return rows


def text(deployment: Deployment, number: str, body: str) -> None:
    answer = deployment.send_sms(number, body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["webhook_status"] == 200, answer.json()


def test_sms_handoff_puts_the_number_on_the_case_and_matches_the_contact_by_it(
    deployment: Deployment,
) -> None:
    number = "+14155550101"
    text(deployment, number, "My router blinks red since this morning.")
    [session] = wait_for(lambda: deployment.sessions(number), what="the SMS session")
    assert session["channel"] == "sms" and session["status"] == "assistant"
    assert deployment.cases_for(number) == []

    text(deployment, number, "Can I speak to a person?")
    case = one_case(deployment, number)
    assert f"{number} wrote by sms" in case["Symptoms"]
    assert f"Customer: {number}" in case["Symptoms"]
    assert "Channel: SMS" in case["Symptoms"]
    assert "My router blinks red since this morning." in case["Symptoms"]
    [contact] = deployment.contacts(number)
    assert contact["MobilePhone"] == number and case["ContactId"] == contact["Id"]
    mobile = deployment.lookup_id("CommunicationType", "Mobile phone")
    communications = deployment.odata("ContactCommunication",
                                      **{"$filter": f"ContactId eq {contact['Id']}"})
    assert [(c["CommunicationTypeId"].lower(), c["Number"]) for c in communications] == [
        (mobile, number)]
    first, second = activities(deployment, case["Id"], 2)
    assert "My router blinks red since this morning." in first["Body"]
    assert "Can I speak to a person?" in second["Body"]
    assert session_link(first["Body"]) is not None and session_link(second["Body"]) is None

    # The same number again: the same contact, the same case, one more activity.
    text(deployment, number, "It is blinking green now, but no internet.")
    *_, third = activities(deployment, case["Id"], 3)
    assert "It is blinking green now, but no internet." in third["Body"]
    assert [c["Id"] for c in deployment.cases_for(number)] == [case["Id"]]
    assert [c["Id"] for c in deployment.contacts(number)] == [contact["Id"]]
    assert [s["id"] for s in deployment.sessions(number)] == [session["id"]]

    deployment.rep_reply(case["Id"], "Please restart the router and wait two minutes.")
    [sent] = wait_for(lambda: deployment.sms_to(number), what="the rep's SMS")
    assert sent["body"] == "Please restart the router and wait two minutes."
    assert sent["from"] == OUR_NUMBER


def test_stop_stops_everything(deployment: Deployment) -> None:
    number = "+14155550102"
    text(deployment, number, "I need to speak to a person about my bill.")
    case = one_case(deployment, number)
    activities(deployment, case["Id"], 1)

    text(deployment, number, "STOP")
    [confirmation] = wait_for(lambda: deployment.sms_to(number), what="the STOP confirmation")
    # The provider's own opt-out handling confirmed (Twilio's default), and told the bridge
    # with OptOutType: the bridge sent no confirmation of its own.
    assert confirmation["direction"] == "outbound-reply"
    # The provider retries the same webhook (same MessageSid): no second confirmation.
    inbound = [i for i in httpx.get(f"{deployment.sms_url}/sandbox/messages", timeout=10)
               .json()["inbound"] if i["form"]["From"] == number and i["form"]["Body"] == "STOP"]
    [stop] = inbound
    assert stop["form"]["OptOutType"] == "STOP"
    url = f"{deployment.bridge_url}/webhooks/sms/inbound"
    retried = httpx.post(url, data=stop["form"], timeout=10, headers={
        "X-Twilio-Signature": compute_signature(SMS_TOKEN, url, stop["form"])})
    assert retried.status_code == 200, retried.text
    # STOP is no message of the conversation: no activity, no other session for it.
    activities(deployment, case["Id"], 1)
    assert len(deployment.sessions(number)) == 1

    deployment.rep_reply(case["Id"], "We have refunded the double charge.")
    _, _, refusal = activities(deployment, case["Id"], 3)  # the rep's own, then the refusal
    assert "not delivered" in refusal["Body"] and "opted out" in refusal["Body"]
    assert deployment.sms_to(number) == [confirmation]
    assert "We have refunded" not in confirmation["body"]

    # STOP from a number never seen: the confirmation, and nothing else anywhere.
    stranger = "+14155550103"
    text(deployment, stranger, "stop")
    [answer] = wait_for(lambda: deployment.sms_to(stranger), what="the stranger's confirmation")
    assert answer["body"] == confirmation["body"]
    assert deployment.sessions(stranger) == []
    assert deployment.contacts(stranger) == []
    assert deployment.cases_for(stranger) == []


def test_a_long_rep_reply_goes_out_in_the_right_number_of_segments(
    deployment: Deployment,
) -> None:
    number = "+14155550104"
    text(deployment, number, "Speak to a person: my phone will not charge.")
    case = one_case(deployment, number)
    activities(deployment, case["Id"], 1)

    reply = ("Please try another cable and another wall socket, then hold the power button "
             "for ten seconds. ") * 5
    reply = reply[:400].strip()
    assert len(reply) >= 395 and segment(reply).encoding == "GSM-7"
    deployment.rep_reply(case["Id"], reply)
    [sent] = wait_for(lambda: deployment.sms_to(number), what="the long reply")
    assert sent["body"] == reply
    # 153 GSM-7 septets per part of a concatenated SMS.
    expected = math.ceil(len(reply) / 153)
    assert expected == 3
    assert int(sent["num_segments"]) == segment(sent["body"]).segments == expected


def test_a_reply_the_provider_refuses_as_opted_out_is_refused_on_the_case(
    deployment: Deployment,
) -> None:
    # Twilio's test number for a recipient blocked for the account (21610): the customer
    # opted out with the provider or the carrier, and the bridge never heard of it.
    number = "+15005550004"
    text(deployment, number, "I need to speak to a person about my contract.")
    case = one_case(deployment, number)
    activities(deployment, case["Id"], 1)

    deployment.rep_reply(case["Id"], "Your contract has been renewed.")
    _, _, refusal = activities(deployment, case["Id"], 3)  # the rep's own, then the refusal
    assert "not delivered" in refusal["Body"] and "opted out" in refusal["Body"]
    assert "21610" in refusal["Body"]
    # The bridge now knows: the next reply is refused without asking the provider.
    deployment.rep_reply(case["Id"], "One more thing about your contract.")
    *_, second = activities(deployment, case["Id"], 5)
    assert "not delivered" in second["Body"] and "opted out" in second["Body"]
    assert "21610" not in second["Body"]
    assert deployment.sms_to(number) == []
