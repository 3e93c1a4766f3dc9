"""Load for the fault and kill tests, and the check of what reached Creatio.

A load is a list of :class:`Conversation`s, each from its own customer (an email address or
a phone number), each asking for a person in its first message so it hands off, some with a
follow-up. Every message carries a unique tag (``[tag:...]``) in its text; the bridge copies
the text into the activity body, so the rep's OData view tells which message became which
activity, on which case, in which order.

Senders retry as real ones do: an SMTP client whose connection dropped (or that got a 4xx)
sends the same message, same Message-ID, again until it gets a 250; the SMS provider posts
the same signed webhook, same MessageSid, again until it gets a 200.
"""

from __future__ import annotations

import hashlib
import re
import smtplib
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import httpx
from casebridge_sms.signature import compute_signature
from deployment import ACCOUNT_SID, OUR_NUMBER, SMS_TOKEN, SUPERVISOR, SUPPORT, Deployment

TAG = re.compile(r"\[tag:([a-z0-9-]+)\]")
HANDOFF_PHRASE = "Can I speak to a person?"


@dataclass(frozen=True, slots=True)
class Note:
    """One customer message: ``tag`` is unique to it; ``key`` is its Message-ID (email) or
    MessageSid (SMS), the same on every resend."""

    tag: str
    text: str
    key: str


@dataclass(frozen=True, slots=True)
class Conversation:
    channel: str
    address: str
    name: str
    notes: tuple[Note, ...]


def conversations(prefix: str, count: int, *, sms_every: int = 0,
                  follow_up_every: int = 3) -> list[Conversation]:
    """``count`` conversations tagged ``prefix``: every ``sms_every``-th one by SMS (0: none),
    every ``follow_up_every``-th one with a second message."""
    made = []
    for n in range(count):
        sms = sms_every > 0 and n % sms_every == sms_every - 1
        size = 2 if follow_up_every > 0 and n % follow_up_every == 0 else 1
        notes = []
        for i in range(size):
            tag = f"{prefix}-{n:04d}-{i}"
            text = (f"Order [tag:{tag}] never arrived. {HANDOFF_PHRASE}" if i == 0
                    else f"Still waiting about my order [tag:{tag}], any news?")
            key = ("SM" + hashlib.sha256(tag.encode()).hexdigest()[:32] if sms
                   else f"<{tag}@customer.example>")
            notes.append(Note(tag, text, key))
        address = (f"+1415555{n % 10000:04d}" if sms else f"{prefix}-{n:04d}@customer.example")
        made.append(Conversation("sms" if sms else "email", address, f"Customer {prefix} {n}",
                                 tuple(notes)))
    return made


def mail(conversation: Conversation, index: int) -> EmailMessage:
    note = conversation.notes[index]
    message = EmailMessage()
    message["From"] = f"{conversation.name} <{conversation.address}>"
    message["To"] = SUPPORT
    message["Subject"] = "Missing order" if index == 0 else "Re: Missing order"
    message["Message-ID"] = note.key
    message["Date"] = format_datetime(datetime.now(UTC))
    if index > 0:
        message["In-Reply-To"] = conversation.notes[0].key
    message.set_content(note.text)
    return message


@dataclass
class Sender:
    """Sends notes to a deployment, retrying until each is accepted; counts the retries."""

    deployment: Deployment
    deadline: float = 120.0
    retries: Counter[str] = field(default_factory=Counter)

    def send(self, conversation: Conversation, index: int) -> None:
        if conversation.channel == "email":
            self._retry(lambda: self.email(mail(conversation, index)), "email")
        else:
            note = conversation.notes[index]
            self._retry(lambda: self.sms(conversation.address, note), "sms")

    def send_all(self, conversation: Conversation) -> None:
        for index in range(len(conversation.notes)):
            self.send(conversation, index)

    def _retry(self, attempt: Any, what: str) -> None:
        give_up = time.monotonic() + self.deadline
        while True:
            try:
                attempt()
                return
            except (OSError, smtplib.SMTPServerDisconnected, httpx.TransportError,
                    TemporaryFailure) as exc:
                if isinstance(exc, smtplib.SMTPResponseException):
                    raise  # a 5xx refusal: sending it again would not help
                self.retries[f"{what}: {type(exc).__name__}"] += 1
                if time.monotonic() > give_up:
                    raise AssertionError(f"{what} still not accepted: {exc}") from exc
                # A refused connection means the bridge is down: no use knocking 20 times a second.
                time.sleep(0.2 if isinstance(exc, ConnectionRefusedError | httpx.ConnectError)
                           else 0.05)

    def email(self, message: EmailMessage) -> None:
        with smtplib.SMTP("127.0.0.1", self.deployment.smtp_port, timeout=30) as smtp:
            try:
                smtp.send_message(message)
            except smtplib.SMTPResponseException as exc:
                if 400 <= exc.smtp_code < 500:
                    raise TemporaryFailure(f"SMTP {exc.smtp_code}") from exc
                raise

    def sms(self, sender: str, note: Note) -> None:
        """What the provider posts for an inbound SMS, signed; the same MessageSid on every
        resend, as the provider retries."""
        url = f"{self.deployment.bridge_url}/webhooks/sms/inbound"
        form = {"MessageSid": note.key, "SmsSid": note.key, "SmsMessageSid": note.key,
                "AccountSid": ACCOUNT_SID, "From": sender, "To": OUR_NUMBER,
                "Body": note.text, "NumMedia": "0", "NumSegments": "1",
                "SmsStatus": "received", "ApiVersion": "2010-04-01"}
        headers = {"X-Twilio-Signature": compute_signature(SMS_TOKEN, url, form)}
        answer = httpx.post(url, data=form, headers=headers, timeout=30)
        if answer.status_code >= 500 or answer.status_code == 429:
            raise TemporaryFailure(f"SMS webhook {answer.status_code}")
        assert answer.status_code < 300, f"SMS webhook refused: {answer.status_code} {answer.text}"


class TemporaryFailure(Exception):
    """A 4xx SMTP reply or a 5xx webhook answer: the sender tries again."""


# -- what reached Creatio -------------------------------------------------------------------


class CrmReader:
    """The rep's OData view of the Creatio sandbox, read through whatever faults the sandbox
    injects: every request is retried until it answers 200."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.client = httpx.Client(base_url=deployment.creatio_url, timeout=30)

    def close(self) -> None:
        self.client.close()

    def _login(self) -> None:
        self.client.cookies.clear()
        answer = self.client.post("/ServiceModel/AuthService.svc/Login",
                                  json={"UserName": SUPERVISOR, "UserPassword": SUPERVISOR},
                                  headers={"ForceUseSession": "true"})
        answer.raise_for_status()
        if answer.json().get("Code") != 0:
            raise httpx.HTTPStatusError("login refused", request=answer.request,
                                        response=answer)
        self.client.headers["BPMCSRF"] = self.client.cookies["BPMCSRF"]
        self.client.headers["ForceUseSession"] = "true"

    def rows(self, entity: str, **query: str) -> list[dict[str, Any]]:
        give_up = time.monotonic() + 60
        while True:
            try:
                if "BPMCSRF" not in self.client.headers:
                    self._login()
                answer = self.client.get(f"/0/odata/{entity}", params=query)
                if answer.status_code == 401:
                    self.client.headers.pop("BPMCSRF", None)
                answer.raise_for_status()
                return list(answer.json()["value"])
            except (httpx.HTTPError, KeyError, ValueError):
                if time.monotonic() > give_up:
                    raise
                self.client.headers.pop("BPMCSRF", None)
                time.sleep(0.1)

    def snapshot(self) -> Snapshot:
        cases = self.rows("Case", **{"$select": "Id,Number,CreatedOn"})
        activities = self.rows("Activity", **{"$select": "Id,CaseId,Body,CreatedOn",
                                              "$orderby": "CreatedOn"})
        contacts = self.rows("Contact", **{"$select": "Id,Email,MobilePhone"})
        return Snapshot({c["Id"] for c in cases}, activities, contacts)


@dataclass(frozen=True, slots=True)
class Snapshot:
    case_ids: set[str]
    activities: list[dict[str, Any]]
    contacts: list[dict[str, Any]]

    def tags(self) -> Counter[str]:
        return Counter(tag for a in self.activities for tag in TAG.findall(a["Body"] or ""))


def problems(load: Sequence[Conversation], before: Snapshot, after: Snapshot) -> list[str]:
    """What is wrong with ``after`` for ``load``, sent since ``before``: a message that is
    not exactly one activity, a conversation spread over several cases or out of order, a
    case the load made twice (a new case holding none of its messages), a customer who is
    not exactly one Creatio contact. Empty when right."""
    found: list[str] = []
    contacts = Counter(str(c.get(column) or "").lower() for c in after.contacts
                       for column in ("Email", "MobilePhone"))
    for conversation in load:
        if contacts[conversation.address.lower()] != 1:
            found.append(f"{conversation.address}: {contacts[conversation.address.lower()]} "
                         "Creatio contacts (want 1)")
    by_tag: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_case: dict[str, list[str]] = defaultdict(list)
    for activity in after.activities:  # in CreatedOn order
        for tag in TAG.findall(activity["Body"] or ""):
            by_tag[tag].append(activity)
            by_case[activity["CaseId"]].append(tag)
    used_cases: dict[str, str] = {}
    for conversation in load:
        expected = [note.tag for note in conversation.notes]
        counts = {tag: len(by_tag[tag]) for tag in expected}
        wrong = {tag: n for tag, n in counts.items() if n != 1}
        if wrong:
            found.append(f"{conversation.address}: activities per message {wrong} (want 1)")
            continue
        cases = {by_tag[tag][0]["CaseId"] for tag in expected}
        if len(cases) != 1:
            found.append(f"{conversation.address}: messages on {len(cases)} cases")
            continue
        [case] = cases
        if case in used_cases:
            found.append(f"{conversation.address}: shares case {case} with {used_cases[case]}")
        used_cases[case] = conversation.address
        mine = [tag for tag in by_case[case] if tag in counts]
        if mine != expected:
            found.append(f"{conversation.address}: activities in order {mine}, want {expected}")
    new_cases = after.case_ids - before.case_ids
    extra = new_cases - set(used_cases)
    if extra:
        found.append(f"{len(extra)} new case(s) hold no message of the load: "
                     f"{sorted(extra)[:5]}")
    if len(new_cases) != len(load):
        found.append(f"{len(new_cases)} new cases for {len(load)} handoffs")
    return found


def outbox_counts(deployment: Deployment) -> dict[str, int]:
    """Job counts by state, as ``casebridge outbox list`` prints them."""
    done = deployment.cli("outbox", "list", "--limit", "0")
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    return {state: int(n) for state, n in (part.split() for part in last.split(", "))}


def dead_jobs(deployment: Deployment) -> str:
    return deployment.cli("outbox", "list", "--state", "dead", "--limit", "20").stdout


def wait_until_written(deployment: Deployment, reader: CrmReader,
                       load: Sequence[Conversation], timeout: float) -> None:
    """Until every message of ``load`` is an activity and the bridge's outbox has nothing
    pending or running; fails with what is missing after ``timeout`` seconds."""
    wanted = {note.tag for c in load for note in c.notes}
    deadline = time.monotonic() + timeout
    while True:
        missing = wanted - set(reader.snapshot().tags())
        if not missing:
            counts = outbox_counts(deployment)
            if counts.get("pending", 0) == counts.get("running", 0) == 0:
                return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"after {timeout}s, {len(missing)} message(s) are no activity "
                f"(e.g. {sorted(missing)[:5]}); outbox {outbox_counts(deployment)}\n"
                f"{dead_jobs(deployment)}")
        time.sleep(1.0)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def set_faults(deployment: Deployment, **faults: Any) -> None:
    answer = httpx.post(f"{deployment.creatio_url}/sandbox/admin/faults", json=faults,
                        timeout=10)
    assert answer.status_code == 200, answer.text


def fault_stats(deployment: Deployment) -> dict[str, Any]:
    return dict(httpx.get(f"{deployment.creatio_url}/sandbox/admin/stats", timeout=10).json())
