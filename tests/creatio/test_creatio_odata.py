"""odata.py: filters keep their meaning whatever text the customer sent."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qsl

import pytest
from casebridge_creatio import odata
from casebridge_creatio.odata import Guid
from creatio_filters import parse, tokenize
from hypothesis import given
from hypothesis import strategies as st

# -- strategies: an intended tree and the same tree built with odata.py --------------------

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}(/[A-Za-z_][A-Za-z0-9_]{0,8})?", fullmatch=True)
# Property names that are keywords would be ambiguous to any parser, OData's included.
names = names.filter(lambda n: n not in {"and", "or", "not", "eq", "true", "false", "null"})
datetimes = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
values = st.one_of(
    st.text(),
    st.uuids().map(lambda u: ("guid", str(u))),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=32).filter(lambda f: f == f),
    st.booleans(),
    st.none(),
    datetimes,
)


def leaf() -> st.SearchStrategy[tuple[object, odata.Expr]]:
    def cmp(args):
        path, op, value = args
        built_value = Guid(value[1]) if isinstance(value, tuple) else value
        return ("cmp", path, op, value), odata.compare(path, op, built_value)

    def fn(args):
        name, path, text = args
        return ("fn", name, path, text), getattr(odata, name)(path, text)

    return st.one_of(
        st.tuples(names, st.sampled_from(["eq", "ne", "gt", "ge", "lt", "le"]), values).map(cmp),
        st.tuples(st.sampled_from(["contains", "startswith", "endswith"]), names, st.text()).map(
            fn
        ),
    )


def extend(children):
    def combine(args):
        word, items = args
        trees = tuple(t for t, _ in items)
        exprs = [e for _, e in items]
        build = odata.all_of if word == "and" else odata.any_expr
        return (word, trees), build(*exprs)

    def negate(item):
        tree, expr = item
        return ("not", tree), ~expr

    return st.one_of(
        st.tuples(st.sampled_from(["and", "or"]), st.lists(children, min_size=2, max_size=4)).map(
            combine
        ),
        children.map(negate),
    )


trees = st.recursive(leaf(), extend, max_leaves=12)


def normalise(tree: object) -> object:
    """Float literals round-trip through repr; compare them as parsed floats."""
    if isinstance(tree, tuple) and tree and tree[0] == "cmp" and isinstance(tree[3], float):
        return (*tree[:3], float(repr(tree[3])))
    if isinstance(tree, tuple) and tree and tree[0] in ("and", "or"):
        return (tree[0], tuple(normalise(t) for t in tree[1]))
    if isinstance(tree, tuple) and tree and tree[0] == "not":
        return ("not", normalise(tree[1]))
    return tree


@given(trees)
def test_built_filter_parses_back_to_the_intended_tree(item):
    tree, expr = item
    assert parse(expr.text) == normalise(tree)


@given(st.text(), st.text())
def test_customer_text_stays_inside_its_literal(evil, other):
    expr = odata.eq("Email", evil) & odata.contains("Name", other)
    assert parse(expr.text) == (
        "and",
        (("cmp", "Email", "eq", evil), ("fn", "contains", "Name", other)),
    )
    kinds = [kind for kind, _ in tokenize(expr.text)]
    assert kinds.count("str") == 2


@given(st.text())
def test_string_literal_round_trips(text):
    lit = odata.literal(text)
    assert lit.startswith("'") and lit.endswith("'")
    assert lit[1:-1].replace("''", "'") == text
    assert "'" not in lit[1:-1].replace("''", "")


@given(st.uuids())
def test_guid_is_bare_and_lower_case(value):
    assert odata.eq("Contact/Id", Guid(str(value).upper())).text == f"Contact/Id eq {value}"
    assert odata.eq("Id", value).text == f"Id eq {value}"


@given(st.text().filter(lambda t: not re.fullmatch(r"[0-9a-fA-F-]{36}", t)))
def test_non_guid_for_guid_comparison_is_refused(text):
    with pytest.raises(ValueError, match="expected a GUID"):
        odata.eq("ContactId", Guid(text))


@pytest.mark.parametrize(
    "bad", ["{" + str(uuid.UUID(int=1)) + "}", "0" * 32, "urn:uuid:" + "0" * 32]
)
def test_guid_other_spellings_are_refused(bad):
    with pytest.raises(ValueError):
        Guid(bad)


@given(datetimes, st.integers(min_value=-12, max_value=12))
def test_datetimes_are_utc_with_z(value, hours):
    local = value.astimezone(timezone(timedelta(hours=hours)))
    text = odata.eq("CreatedOn", local).text
    assert text.endswith("Z") and "'" not in text
    assert parse(text) == ("cmp", "CreatedOn", "eq", value)


def test_naive_datetime_is_refused():
    with pytest.raises(ValueError, match="no timezone"):
        odata.literal(datetime(2024, 1, 1))


@pytest.mark.parametrize("column", ["", "Name eq 'x' or Id", "Name)", "1abc", "a//b", "a b"])
def test_bad_property_names_are_refused(column):
    with pytest.raises(ValueError, match="property"):
        odata.eq(column, "x")


def test_unknown_operator_and_unsupported_values():
    with pytest.raises(ValueError, match="unknown comparison"):
        odata.compare("Name", "in", "x")
    with pytest.raises(TypeError):
        odata.eq("Name", ["a", "b"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        odata.eq("Size", float("nan"))


@given(st.lists(st.text(), min_size=1, max_size=6))
def test_any_of_is_a_chain_of_or(values):
    tree = parse(odata.any_of("Email", values).text)
    expected = [("cmp", "Email", "eq", v) for v in values]
    assert tree == (expected[0] if len(values) == 1 else ("or", tuple(expected)))


def test_precedence_parenthesisation():
    a, b, c = (odata.eq(n, 1) for n in "abc")
    assert ((a | b) & c).text == "(a eq 1 or b eq 1) and c eq 1"
    assert (a | (b & c)).text == "a eq 1 or b eq 1 and c eq 1"
    assert (~(a & b)).text == "not (a eq 1 and b eq 1)"
    assert ((a & b) & c).text == "(a eq 1 and b eq 1) and c eq 1"


# -- query strings -------------------------------------------------------------------------


@given(st.text(), st.integers(min_value=0, max_value=1000), st.integers(min_value=0))
def test_query_string_encodes_and_decodes_back(text, top, skip):
    where = odata.eq("Name", text)
    qs = odata.query_string(
        filter=where,
        select=["Id", "Name"],
        orderby="CreatedOn desc",
        top=top,
        skip=skip,
        expand="Status",
        count=True,
    )
    assert not re.search(r"[\s&#+]", qs.replace("&$", ""))
    decoded = dict(parse_qsl(qs, keep_blank_values=True))
    assert decoded == {
        "$filter": where.text,
        "$select": "Id,Name",
        "$expand": "Status",
        "$orderby": "CreatedOn desc",
        "$top": str(top),
        "$skip": str(skip),
        "$count": "true",
    }


def test_query_string_refuses_bad_options():
    with pytest.raises(ValueError, match=r"\$top"):
        odata.query_string(top=-1)
    with pytest.raises(ValueError, match=r"\$orderby"):
        odata.query_string(orderby="Name sideways")
    with pytest.raises(TypeError):
        odata.query_string(filter="Name eq 'x'")  # type: ignore[arg-type]
    assert odata.query_string() == ""
