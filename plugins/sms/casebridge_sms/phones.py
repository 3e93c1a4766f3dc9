"""Phone numbers in E.164 (``+14155550100``), the form every SMS provider speaks."""

from __future__ import annotations

import phonenumbers


def normalize(number: str, default_region: str) -> str:
    """``number`` as E.164. A number without a country code is read as ``default_region``'s
    (an ISO 3166 code such as "US" or "DE").

    Raises ValueError naming ``number`` when it is not a valid phone number.
    """
    try:
        parsed = phonenumbers.parse(number, default_region.upper())
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"{number!r} is not a phone number: {exc._msg}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError(
            f"{number!r} is not a valid phone number (read with default region "
            f"{default_region.upper()!r})"
        )
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def digits(e164: str) -> str:
    """The digits of an E.164 number, without the leading "+".

    Raises ValueError naming the input when it is not in E.164 form.
    """
    rest = e164[1:]
    if not (e164.startswith("+") and rest.isascii() and rest.isdigit() and 2 <= len(rest) <= 15):
        raise ValueError(f"{e164!r} is not an E.164 number (expected '+' and 2 to 15 digits)")
    return rest
