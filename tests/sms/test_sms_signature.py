import base64
import hashlib
import hmac

from casebridge_sms.signature import (
    compute_signature,
    signed_url_variants,
    verify_signature,
    with_default_port,
    without_port,
)
from hypothesis import assume, given
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

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
    # Twilio's validator accepts a signature over the URL with its port removed or added.
    assume(url not in signed_url_variants(url + extra))
    sig = compute_signature(token, url, params)
    assert not verify_signature(token, url + extra, params, sig)


@given(tokens, params_st, st.text(max_size=30))
def test_garbage_signature_fails(token: str, params: dict[str, str], junk: str) -> None:
    assume(junk != compute_signature(token, URL, params))
    assert not verify_signature(token, URL, params, junk)


# -- port variants, as Twilio's own RequestValidator accepts them ------------------------


def test_the_default_port_may_be_present_or_not() -> None:
    pairs = [
        ("https://bridge.example.test/sms?x=1", "https://bridge.example.test:443/sms?x=1"),
        ("http://bridge.example.test/sms", "http://bridge.example.test:80/sms"),
    ]
    for plain, ported in pairs:
        for signed, received in ((plain, ported), (ported, plain)):
            sig = compute_signature("token-123", signed, PARAMS)
            assert verify_signature("token-123", received, PARAMS, sig), (signed, received)
    # Another scheme's default port is another URL.
    wrong = compute_signature("token-123", "https://bridge.example.test:80/sms", PARAMS)
    assert not verify_signature("token-123", "https://bridge.example.test/sms", PARAMS, wrong)
    other = compute_signature("token-123", "https://bridge.example.test:443/sms", PARAMS)
    assert not verify_signature("token-123", "https://bridge.example.test:8443/sms", PARAMS, other)


@given(
    st.sampled_from(["http", "https"]),
    st.sampled_from(["h.test", "bridge.example.com"]),
    st.one_of(st.none(), st.integers(1, 65535)),
    st.text("abc/-_.%", max_size=12),
)
def test_port_helpers_round_trip(scheme: str, host: str, port: int | None, path: str) -> None:
    url = f"{scheme}://{host}{f':{port}' if port else ''}/{path}"
    default = {"https": 443, "http": 80}[scheme]
    assert without_port(url) == f"{scheme}://{host}/{path}"
    assert with_default_port(without_port(url)) == f"{scheme}://{host}:{default}/{path}"
    assert with_default_port(url) == (url if port else f"{scheme}://{host}:{default}/{path}")
    assert signed_url_variants(url)[0] == url


class MultiDict:
    """The minimal MultiDict RequestValidator reads repeated fields from (``getall``)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self.items = items

    def __iter__(self):
        return iter(name for name, _ in self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def getall(self, name: str) -> list[str]:
        return [value for key, value in self.items if key == name]


hosts = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){1,2}", fullmatch=True)
ports = st.one_of(st.none(), st.sampled_from([80, 443, 8080, 8443]), st.integers(1, 65535))
paths = st.text("abcXYZ019/-_.~%", max_size=20)
queries = st.one_of(st.just(""), st.text("abc=&019%+", min_size=1, max_size=15).map("?".__add__))


@st.composite
def urls(draw: st.DrawFn) -> str:
    scheme, host = draw(st.sampled_from(["http", "https"])), draw(hosts)
    port = draw(ports)
    return f"{scheme}://{host}{f':{port}' if port else ''}/{draw(paths)}{draw(queries)}"


@given(tokens, urls(), params_st)
def test_same_signature_as_twilios_validator(token: str, url: str, params: dict) -> None:
    assert compute_signature(token, url, params) == RequestValidator(token).compute_signature(
        url, params
    )


@given(
    tokens,
    st.lists(st.tuples(st.sampled_from(["A", "B", "Media"]), st.text(max_size=4)), max_size=6),
    urls(),
)
def test_repeated_fields_sign_as_twilios_validator(
    token: str, items: list[tuple[str, str]], url: str
) -> None:
    expected = RequestValidator(token).compute_signature(url, MultiDict(items))
    assert compute_signature(token, url, items) == expected


@given(tokens, urls(), urls(), params_st, st.booleans())
def test_accepts_exactly_what_twilios_validator_accepts(
    token: str, url: str, other: str, params: dict[str, str], related: bool
) -> None:
    validator = RequestValidator(token)
    # Sign the received URL's variants (with, without port) or an unrelated URL.
    candidates = [without_port(url), with_default_port(url), url] if related else [other]
    for signed in candidates:
        signature = validator.compute_signature(signed, params)
        ours = verify_signature(token, url, params, signature)
        assert ours == validator.validate(url, params, signature), (signed, url)
        if related:
            assert ours
