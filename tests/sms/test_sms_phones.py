import phonenumbers
import pytest
from casebridge_sms.phones import digits, normalize
from hypothesis import given
from hypothesis import strategies as st

REGIONS = ["US", "GB", "DE", "FR", "BR", "IN", "AU", "JP"]


@st.composite
def example_numbers(draw: st.DrawFn) -> tuple[str, str, str]:
    """(how a person might type it, its region, its E.164) from phonenumbers' examples."""
    region = draw(st.sampled_from(REGIONS))
    kind = draw(
        st.sampled_from(
            [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]
        )
    )
    example = phonenumbers.example_number_for_type(region, kind)
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    style = draw(
        st.sampled_from(
            [
                phonenumbers.PhoneNumberFormat.NATIONAL,
                phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                phonenumbers.PhoneNumberFormat.E164,
            ]
        )
    )
    return phonenumbers.format_number(example, style), region, e164


@given(example_numbers())
def test_any_written_form_normalizes_to_e164(sample: tuple[str, str, str]) -> None:
    typed, region, e164 = sample
    assert normalize(typed, region) == e164
    assert normalize(e164, "US") == e164
    assert digits(e164) == e164[1:]


def test_examples() -> None:
    assert normalize("(415) 555-0132", "us") == "+14155550132"
    assert normalize("+44 20 7946 0958", "US") == "+442079460958"
    assert normalize("030 901820", "DE") == "+4930901820"


@pytest.mark.parametrize("bad", ["", "hello", "+1 555", "12", "+999 123456789"])
def test_invalid_numbers_are_named(bad: str) -> None:
    with pytest.raises(ValueError, match=repr(bad).replace("+", r"\+")):
        normalize(bad, "US")


@given(st.text(max_size=20).filter(lambda s: not (s[:1] == "+" and s[1:].isdigit())))
def test_digits_rejects_non_e164(text: str) -> None:
    with pytest.raises(ValueError, match=r"not an E\.164 number"):
        digits(text)
