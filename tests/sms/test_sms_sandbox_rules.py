"""The sandbox's pure Twilio rules and the plugin's reading of an inbound keyword."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from casebridge_sms.keyword_answers import inbound_keyword
from casebridge_sms.keywords import Keyword, classify
from casebridge_sms.sandbox_rules import (
    Account,
    matches_date_sent,
    parse_date_filter,
    refuse_create,
)
from hypothesis import given
from hypothesis import strategies as st

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
maybe = st.one_of(st.none(), moments)


@given(st.dates(min_value=date(1970, 1, 1), max_value=date(2999, 12, 31)))
def test_a_bare_date_is_its_utc_midnight(day: date) -> None:
    assert parse_date_filter(day.isoformat()) == datetime.combine(day, time(), UTC)


@given(moments)
def test_the_sdks_date_time_form_reads_back(moment: datetime) -> None:
    moment = moment.replace(microsecond=0)
    assert parse_date_filter(moment.strftime("%Y-%m-%dT%H:%M:%SZ")) == moment


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01", "04/12/2026", "2026-12-04T25:00"])
def test_a_filter_that_is_no_date_is_named(value: str) -> None:
    with pytest.raises(ValueError, match=value.replace("/", ".")):
        parse_date_filter(value)


@given(maybe, maybe, maybe)
def test_a_message_not_sent_matches_no_date_sent_filter(on, before, after) -> None:
    filtered = any(v is not None for v in (on, before, after))
    assert matches_date_sent(None, on=on, before=before, after=after) is not filtered


@given(moments, maybe, maybe, maybe)
def test_date_sent_filters_are_inclusive_bounds_and_a_day(sent, on, before, after) -> None:
    expected = (
        (on is None or on.date() == sent.date())
        and (before is None or sent <= before)
        and (after is None or sent >= after)
    )
    assert matches_date_sent(sent, on=on, before=before, after=after) is expected
    # Same instant in another zone: the same answer.
    shifted = sent.astimezone(datetime.now().astimezone().tzinfo)
    assert matches_date_sent(shifted, on=on, before=before, after=after) is expected
    assert matches_date_sent(sent, after=sent, before=sent + timedelta(0))


@given(st.sampled_from(["STOP", "stop", " Start ", "HELP"]), st.text(max_size=12))
def test_optouttype_wins_over_the_body(kind: str, body: str) -> None:
    keyword, answered = inbound_keyword({"OptOutType": kind, "Body": body})
    assert answered is True
    assert (
        keyword
        == {"STOP": Keyword.OPT_OUT, "START": Keyword.OPT_IN, "HELP": Keyword.HELP}[
            kind.strip().upper()
        ]
    )


@given(st.text(max_size=20), st.sampled_from(["", "UNKNOWN"]))
def test_without_optouttype_the_body_decides(body: str, kind: str) -> None:
    assert inbound_keyword({"OptOutType": kind, "Body": body}) == (classify(body), False)


def test_opt_outs_block_the_pair_and_a_service_send_to_the_customer() -> None:
    account = Account(
        numbers=frozenset({"+14155550000"}),
        messaging_services=frozenset({"MG1"}),
        opted_out=frozenset({("+14155550000", "+14155550100")}),
    )
    base = {"To": "+14155550100", "Body": "hi"}
    assert refuse_create({**base, "From": "+14155550000"}, account).code == 21610
    assert refuse_create({**base, "MessagingServiceSid": "MG1"}, account).code == 21610
    assert refuse_create({**base, "From": "+15005550006"}, account) is None
    assert refuse_create({**base, "To": "+14155550101", "From": "+14155550000"}, account) is None
