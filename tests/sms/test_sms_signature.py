import base64
import hashlib
import hmac

from casebridge_sms.signature import compute_signature, verify_signature
from hypothesis import assume, given
from hypothesis import strategies as st

URL = "https://bridge.example.test/sms/inbound?tenant=a"
PARAMS = {"To": "+15005550006", "Body": "Hi there", "From": "+14155550100", "NumMedia": "0"}


def test_known_vector_computed_by_hand() -> None:
    signed = URL + "BodyHi there" + "From+14155550100" + "NumMedia0" + "To+15005550006"
    digest = hmac.new(b"token-123", signed.encode(), hashlib.sha1).digest()
    expected = base64.b64encode(digest).decode()
    assert compute_signature("token-123", URL, PARAMS) == expected
    assert compute_signature("token-123", URL, list(PARAMS.items())[::-1]) == expected
    assert verify_signature("token-123", URL, PARAMS, expected)


names = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh0123456789", min_size=1, max_size=12)
params_st = st.dictionaries(names, st.text(max_size=40), max_size=8)
tokens = st.text(min_size=1, max_size=40)


@given(tokens, st.text(max_size=80), params_st)
def test_round_trip_any_order(token: str, url: str, params: dict[str, str]) -> None:
    sig = compute_signature(token, url, params)
    assert verify_signature(token, url, list(reversed(list(params.items()))), sig)


@given(tokens, tokens, st.text(max_size=80), params_st)
def test_wrong_token_fails(token: str, other: str, url: str, params: dict[str, str]) -> None:
    assume(token != other)
    assert not verify_signature(other, url, params, compute_signature(token, url, params))


@given(tokens, st.text(max_size=80), params_st, names, st.text(max_size=20))
def test_tampered_param_fails(
    token: str, url: str, params: dict[str, str], name: str, value: str
) -> None:
    assume(params.get(name) != value)
    sig = compute_signature(token, url, params)
    assert not verify_signature(token, url, {**params, name: value}, sig)


@given(tokens, st.text(max_size=80), st.text(min_size=1, max_size=10), params_st)
def test_tampered_url_fails(token: str, url: str, extra: str, params: dict[str, str]) -> None:
    sig = compute_signature(token, url, params)
    assert not verify_signature(token, url + extra, params, sig)


@given(tokens, params_st, st.text(max_size=30))
def test_garbage_signature_fails(token: str, params: dict[str, str], junk: str) -> None:
    assume(junk != compute_signature(token, URL, params))
    assert not verify_signature(token, URL, params, junk)
