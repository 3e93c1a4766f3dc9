"""MAIL FROM and RCPT TO addresses: the SMTP server's quick reading of ``<local@domain>``
gives what aiosmtpd's own parser gives, for that form and for anything near it."""

from __future__ import annotations

from aiosmtpd.smtp import SMTP
from casebridge_email.smtp_server import _Smtp
from hypothesis import given
from hypothesis import strategies as st


class _Stock(SMTP):
    def __init__(self, limit: int) -> None:  # only what _getaddr reads
        self.local_part_limit = limit


class _Ours(_Smtp):
    def __init__(self, limit: int) -> None:
        self.local_part_limit = limit


atext = st.text("abcXYZ019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=8)
atoms = st.lists(atext, min_size=1, max_size=3).map(".".join)
odd = st.sampled_from(["", ".", "..", " ", "\t", "\"q\"", "[1.2.3.4]", "(c)", "<", ">", "@"])
params = st.sampled_from(["", " SIZE=100", "  SIZE=1 BODY=8BITMIME", "\tX=1", " ", "x",
                          " SIZE=1\r\n"])


@given(st.sampled_from(["", " ", "\t"]), atoms, odd, atoms, odd, params,
       st.sampled_from([0, 5, 64]))
def test_the_quick_reading_agrees_with_aiosmtpds(
    lead: str, local: str, local_odd: str, domain: str, domain_odd: str, rest: str, limit: int
) -> None:
    for arg in (f"{lead}<{local}@{domain}>{rest}",
                f"{lead}<{local}{local_odd}@{domain}{domain_odd}>{rest}",
                f"{lead}{local}@{domain}{rest}"):
        assert _Ours(limit)._getaddr(arg) == _Stock(limit)._getaddr(arg), arg


@given(st.text(max_size=40))
def test_any_text_reads_as_aiosmtpd_reads_it(arg: str) -> None:
    try:
        expected = _Stock(64)._getaddr(arg)
    except Exception as exc:  # aiosmtpd's parser fails on some input: so do we
        expected = type(exc)
    try:
        got = _Ours(64)._getaddr(arg)
    except Exception as exc:
        got = type(exc)
    assert got == expected
