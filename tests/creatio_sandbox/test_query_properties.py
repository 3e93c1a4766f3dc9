"""Property tests of the $filter/$orderby parser: round trips, quoting, and clean errors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from casebridge_creatio.sandbox.evaluate import bind_filter, evaluate
from casebridge_creatio.sandbox.query import (
    Call,
    Compare,
    Literal,
    Logical,
    Not,
    OrderKey,
    Prop,
    QueryError,
    format_filter,
    parse_expand,
    parse_filter,
    parse_orderby,
    quote,
)
from casebridge_creatio.sandbox.schema import (
    BOOL,
    DATETIME,
    DECIMAL,
    ENTITIES,
    GUID,
    INT,
    TEXT,
    format_datetime,
)
from hypothesis import given
from hypothesis import strategies as st

names = st.sampled_from(["Subject", "StatusId", "Contact", "Id", "Number", "IsFinal", "X_1"])
paths = st.lists(names, min_size=1, max_size=3).map(lambda p: Prop(tuple(p)))
literals = st.one_of(
    st.text().map(lambda s: Literal(TEXT, s)),
    st.uuids().map(lambda u: Literal(GUID, str(u))),
    st.integers(-(10**12), 10**12).map(lambda i: Literal(INT, i)),
    st.decimals(allow_nan=False, allow_infinity=False, places=3,
                min_value=-(10**6), max_value=10**6).map(lambda d: Literal(DECIMAL, d)),
    st.booleans().map(lambda b: Literal(BOOL, b)),
    st.just(Literal("null", None)),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1),
                 timezones=st.just(UTC)).map(lambda d: Literal(DATETIME, d)),
)
operands = st.one_of(paths, literals, st.builds(
    lambda n, a, b: Call(n, (a, b)), st.sampled_from(["contains", "startswith", "endswith"]),
    paths, literals))
comparisons = st.builds(Compare, st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le"]),
                        operands, operands)
expressions = st.recursive(
    comparisons,
    lambda inner: st.one_of(
        st.builds(Logical, st.sampled_from(["and", "or"]), inner, inner),
        st.builds(Not, inner),
    ),
    max_leaves=12,
)


@given(expressions)
def test_format_then_parse_is_identity(expr: object) -> None:
    text = format_filter(expr)  # type: ignore[arg-type]
    assert parse_filter(text) == expr


@given(st.text())
def test_quoted_strings_parse_back_to_themselves(value: str) -> None:
    assert parse_filter(f"Subject eq {quote(value)}") == Compare(
        "eq", Prop(("Subject",)), Literal(TEXT, value))


@given(st.text(max_size=200))
def test_arbitrary_text_parses_or_raises_query_error(text: str) -> None:
    try:
        expr = parse_filter(text)
        bind_filter(expr, ENTITIES["Case"])
    except QueryError as exc:
        assert str(exc)


@given(st.text(alphabet="()notandoreq '/,0123456789-aZ", max_size=120))
def test_filter_like_noise_never_crashes(text: str) -> None:
    try:
        parse_filter(text)
        parse_orderby(text)
        parse_expand(text)
    except QueryError:
        pass


def test_deep_nesting_is_a_query_error() -> None:
    with pytest.raises(QueryError):
        parse_filter("(" * 5000 + "Subject eq 'a'" + ")" * 5000)
    with pytest.raises(QueryError):
        parse_filter("not " * 5000 + "true")


@given(st.text(), st.text())
def test_evaluation_of_functions_matches_python(subject: str, needle: str) -> None:
    row = {"Subject": subject}
    for name, expected in [("contains", needle.casefold() in subject.casefold()),
                           ("startswith", subject.casefold().startswith(needle.casefold())),
                           ("endswith", subject.casefold().endswith(needle.casefold()))]:
        expr = parse_filter(f"{name}(Subject, {quote(needle)})")
        bind_filter(expr, ENTITIES["Case"])
        assert evaluate(expr, row, ENTITIES["Case"], lambda e, i: None) is expected


@given(st.datetimes(timezones=st.just(UTC)), st.datetimes(timezones=st.just(UTC)))
def test_datetime_comparison_matches_python(stored: datetime, literal: datetime) -> None:
    expr = parse_filter(f"CreatedOn gt {format_datetime(literal)}")
    bind_filter(expr, ENTITIES["Case"])
    row = {"CreatedOn": format_datetime(stored)}
    assert evaluate(expr, row, ENTITIES["Case"], lambda e, i: None) is (stored > literal)


def test_navigation_follows_lookups() -> None:
    status_id = str(uuid.uuid4())
    statuses = {status_id: {"Id": status_id, "IsFinal": True}}
    expr = parse_filter("Status/IsFinal eq true")
    bind_filter(expr, ENTITIES["Case"])
    assert evaluate(expr, {"StatusId": status_id}, ENTITIES["Case"],
                    lambda e, i: statuses.get(i)) is True
    assert evaluate(expr, {"StatusId": None}, ENTITIES["Case"],
                    lambda e, i: statuses.get(i)) is False


@given(st.lists(st.tuples(st.sampled_from(["Subject", "Status/Name", "CreatedOn"]),
                          st.sampled_from(["", " asc", " desc"])), min_size=1, max_size=4))
def test_orderby_parses_each_key(keys: list[tuple[str, str]]) -> None:
    text = ", ".join(path + direction for path, direction in keys)
    assert parse_orderby(text) == [OrderKey(tuple(path.split("/")), direction == " desc")
                                   for path, direction in keys]
