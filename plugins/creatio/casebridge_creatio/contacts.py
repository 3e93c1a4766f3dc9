"""The contact as Creatio holds it: the records that create it, and matching phone numbers.

Pure: no I/O. A phone number is matched on its digits (with or without the country code
or a national prefix), never on formatting, as Creatio's own ``SearchNumber`` does.
"""

from __future__ import annotations

from typing import Any

import phonenumbers
from casebridge.plugin import Contact, derived_id

from .settings import COMMUNICATION_EMAIL, COMMUNICATION_MOBILE

__all__ = [
    "clip",
    "contact_own_id",
    "contact_records",
    "digits",
    "national",
    "phone_matches",
    "search_number",
]


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def search_number(e164: str) -> str:
    """Creatio's ``SearchNumber`` form of a number: its digits reversed."""
    return digits(e164)[::-1]


def national(e164: str) -> tuple[str, str, str]:
    """(all digits, national significant number, national prefix) of an E.164 number."""
    full = digits(e164)
    try:
        parsed = phonenumbers.parse(e164 if e164.startswith("+") else f"+{full}")
    except phonenumbers.NumberParseException:
        return full, full, ""
    nsn = phonenumbers.national_significant_number(parsed)
    region = phonenumbers.region_code_for_number(parsed)
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region or "", None)
    prefix = (meta.national_prefix if meta else None) or ""
    return full, nsn or full, prefix


def phone_matches(e164: str, candidate: str) -> bool:
    """Whether ``candidate`` (formatted any way, with or without the country code) is the
    same number as ``e164``: digits are compared, never formatting."""
    have = digits(candidate)
    if not have:
        return False
    full, nsn, prefix = national(e164)
    if have in (full, nsn):
        return True
    if not have.endswith(nsn):
        return False
    lead = have[: -len(nsn)]
    country = full[: -len(nsn)]
    return lead in {prefix, "0", f"00{country}", f"011{country}"} - {""}


def contact_own_id(contact: Contact) -> str:
    """The Id casebridge gives the Creatio contact it creates for ``contact``."""
    # "creatio" here is a namespace for record Ids, not the plugin's name: renaming the
    # plugin in the TOML must not change the Ids of the contacts it already wrote.
    return derived_id("creatio", "contact", contact.id)


def contact_records(contact: Contact) -> list[tuple[str, dict[str, Any]]]:
    """The records that create ``contact`` in Creatio, as (entity, body): the Contact, then a
    ContactCommunication for each further address. Creatio copies the contact's Email and
    MobilePhone into communication rows itself; only the further ones need rows."""
    emails = [e for e in contact.emails if e]
    phones = [p for p in contact.phones if p]
    name = contact.name.strip() or (emails[0] if emails else "") or (phones[0] if phones else "")
    contact_id = contact_own_id(contact)
    body: dict[str, Any] = {"Id": contact_id, "Name": clip(name or "Unknown customer", 250)}
    if emails:
        body["Email"] = emails[0]
    if phones:
        body["MobilePhone"] = phones[0]
    records: list[tuple[str, dict[str, Any]]] = [("Contact", body)]
    extra = [(COMMUNICATION_EMAIL, e) for e in emails[1:]]
    extra += [(COMMUNICATION_MOBILE, p) for p in phones[1:]]
    for kind, number in extra:
        records.append(("ContactCommunication", {
            "Id": derived_id("creatio", "communication", contact.id, number),
            "ContactId": contact_id,
            "CommunicationTypeId": kind,
            "Number": number,
        }))
    return records
