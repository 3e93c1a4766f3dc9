"""What Twilio's Messages API refuses, and how its list filters, as pure rules for the sandbox.

Twilio answers a refused create with HTTP 400 and its error body (``code``, ``message``,
``more_info``, ``status``). The codes and the test-credential "magic" numbers follow
Twilio's documentation (Test Credentials, "Test SMS messages"):

* ``From`` +15005550006 passes; +15005550001 is invalid (21212); +15005550007 is not owned
  by the account (21606); +15005550008 has a full queue (21611); +15005550009 cannot send SMS
  (21606). Any other ``From`` must be one of the account's numbers: not a phone number at
  all is 21212, a number not on the account 21659.
* ``To`` +15005550001 is invalid (21211); +15005550002 cannot be routed (21612);
  +15005550003 needs an international permission (21408); +15005550004 is blocked (21610);
  +15005550009 cannot receive SMS (21614). Any other ``To`` must be a possible E.164 number.
* A ``MessagingServiceSid`` the account does not have is 21701.
* A ``To`` that texted an opt-out keyword to the sender is 21610 (Twilio's own opt-out
  handling).

``DateSent`` filters look at the date a message was sent only: a message still queued has
none and matches no ``DateSent`` filter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

import phonenumbers

from casebridge_sms.keywords import Keyword, classify

MAX_BODY_CHARS = 1600
VALID_FROM = "+15005550006"

_NOT_OWNED = (
    "The From phone number {value} is not a valid, SMS-capable inbound phone number or short "
    "code for your account."
)
_INVALID_FROM = (
    "The 'From' number {value} is not a valid phone number, shortcode, or alphanumeric sender ID."
)
MAGIC_FROM: dict[str, tuple[int, str]] = {
    "+15005550001": (21212, _INVALID_FROM),
    "+15005550007": (21606, _NOT_OWNED),
    "+15005550008": (
        21611,
        "This 'From' number has exceeded the maximum number of queued messages",
    ),
    "+15005550009": (21606, _NOT_OWNED),
}
MAGIC_TO: dict[str, tuple[int, str]] = {
    "+15005550001": (21211, "Invalid 'To' Phone Number: {value}"),
    "+15005550002": (
        21612,
        "The 'To' phone number: {value}, is not currently reachable using the 'From' phone "
        "number via SMS.",
    ),
    "+15005550003": (
        21408,
        "Permission to send an SMS has not been enabled for the region indicated by the 'To' "
        "number: {value}.",
    ),
    "+15005550004": (21610, "Attempt to send to unsubscribed recipient"),
    "+15005550009": (21614, "'To' number {value} is not a valid mobile number"),
}

# Twilio's answers when its own opt-out handling takes a keyword (its default texts).
AUTO_REPLIES: dict[Keyword, str] = {
    Keyword.OPT_OUT: (
        "You have successfully been unsubscribed. You will not receive any more messages from "
        "this number. Reply START to resubscribe."
    ),
    Keyword.OPT_IN: (
        "You have successfully been re-subscribed to messages from this number. Reply HELP for "
        "help. Reply STOP to unsubscribe. Msg&Data Rates May Apply."
    ),
    Keyword.HELP: "Reply STOP to unsubscribe. Msg&Data Rates May Apply.",
}
# The webhook's OptOutType for each keyword (sent with Advanced Opt-Out).
OPT_OUT_TYPES: dict[Keyword, str] = {
    Keyword.OPT_OUT: "STOP",
    Keyword.OPT_IN: "START",
    Keyword.HELP: "HELP",
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """An error answer: HTTP ``status`` and Twilio's ``code`` and ``message``."""

    code: int
    message: str
    status: int = 400

    def body(self) -> dict[str, object]:
        """Twilio's JSON error body."""
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class Account:
    """What a create is checked against: the account's numbers and messaging services, and
    the (our number, customer) pairs blocked by an opt-out."""

    numbers: frozenset[str] = frozenset()
    messaging_services: frozenset[str] = frozenset()
    opted_out: frozenset[tuple[str, str]] = frozenset()

    def blocked(self, sender: str | None, to: str) -> bool:
        # A messaging service sends from its pool: an opt-out from any of our numbers counts.
        if sender is None:
            return any(customer == to for _, customer in self.opted_out)
        return (sender, to) in self.opted_out


def is_possible_number(value: str) -> bool:
    """True for an E.164 number ("+" and digits) of a possible length for its country."""
    rest = value[1:]
    if not (value.startswith("+") and rest.isascii() and rest.isdigit()):
        return False
    try:
        return phonenumbers.is_possible_number(phonenumbers.parse(value, None))
    except phonenumbers.NumberParseException:
        return False


def _magic(table: dict[str, tuple[int, str]], value: str) -> Refusal | None:
    if value not in table:
        return None
    code, message = table[value]
    return Refusal(code, message.format(value=value))


def refuse_create(fields: Mapping[str, str], account: Account) -> Refusal | None:
    """Why Twilio would refuse to create a message from these form ``fields``, or None."""
    to = fields.get("To", "")
    sender = fields.get("From", "")
    service = fields.get("MessagingServiceSid", "")
    body = fields.get("Body", "")
    if not to:
        return Refusal(21604, "A 'To' phone number is required.")
    if refusal := _magic(MAGIC_TO, to):
        return refusal
    if not is_possible_number(to):
        return Refusal(21211, f"Invalid 'To' Phone Number: {to}")
    if not sender and not service:
        return Refusal(21603, "A 'From' phone number is required.")
    if service and service not in account.messaging_services:
        return Refusal(21701, f"The Messaging Service Sid {service} is invalid.")
    if sender:
        if refusal := _magic(MAGIC_FROM, sender):
            return refusal
        if sender != VALID_FROM and sender not in account.numbers:
            if not is_possible_number(sender):
                return Refusal(21212, _INVALID_FROM.format(value=sender))
            return Refusal(
                21659,
                f"'From' {sender} is not a Twilio phone number or Short Code country mismatch",
            )
    if not body and not fields.get("MediaUrl"):
        return Refusal(21602, "Message body is required.")
    if len(body) > MAX_BODY_CHARS:
        return Refusal(21617, "The concatenated message body exceeds the 1600 character limit.")
    if account.blocked(sender or None, to):
        return _magic(MAGIC_TO, "+15005550004")
    return None


def opt_out_keyword(body: str) -> Keyword | None:
    """The keyword Twilio's opt-out handling takes ``body`` for (the whole body, any case)."""
    return classify(body)


def parse_date_filter(value: str | None) -> datetime | None:
    """A ``DateSent`` filter value (``YYYY-MM-DD``, or an ISO 8601 date-time as the twilio
    SDK sends it) as an aware datetime; a bare date is its midnight, UTC.

    Raises ValueError naming the value when it is neither.
    """
    if not value:
        return None
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(), UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or an ISO 8601 date-time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def matches_date_sent(
    sent: datetime | None,
    *,
    on: datetime | None = None,
    before: datetime | None = None,
    after: datetime | None = None,
) -> bool:
    """Whether a message sent at ``sent`` (None: not sent yet) passes ``DateSent=on`` (the
    same UTC day), ``DateSent<=before`` and ``DateSent>=after`` (both inclusive)."""
    if on is None and before is None and after is None:
        return True
    if sent is None:
        return False
    sent = sent.astimezone(UTC)
    if on is not None and sent.date() != on.astimezone(UTC).date():
        return False
    if before is not None and sent > before:
        return False
    return after is None or sent >= after
