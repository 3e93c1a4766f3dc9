"""The bounded JSON reader every entry point uses: what it reads, what it refuses and how."""

from __future__ import annotations

import json
from typing import Any

import pytest
from casebridge.json_input import MAX_DEPTH, JsonInputError, loads, nesting_depth
from hypothesis import given, settings
from hypothesis import strategies as st

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


def nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


@settings(deadline=None)
@given(values)
def test_any_json_value_within_the_bound_reads_back(value: Any) -> None:
    assert loads(json.dumps(value)) == value
    assert loads(json.dumps(value).encode("utf-16")) == value


@settings(deadline=None)
@given(st.integers(min_value=0, max_value=3 * MAX_DEPTH))
def test_depth_is_counted_and_bounded(depth: int) -> None:
    value = nested(depth)
    assert nesting_depth(value) == depth
    text = json.dumps(value)
    if depth <= MAX_DEPTH:
        assert loads(text) == value
    else:
        with pytest.raises(JsonInputError, match=f"nested deeper than {MAX_DEPTH} levels"):
            loads(text, what="the webhook body")


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 100_000, b"[" * 100_000 + b"]"])
def test_pathological_nesting_is_a_clear_value_error_not_a_recursion_error(body: bytes) -> None:
    with pytest.raises(JsonInputError) as refused:
        loads(body, what="the webhook body")
    assert isinstance(refused.value, ValueError)
    assert str(refused.value) == f"the webhook body is JSON nested deeper than {MAX_DEPTH} levels"


def test_bad_syntax_encoding_and_size_are_named() -> None:
    with pytest.raises(JsonInputError, match=r"^the answer is not JSON \(Expecting value at"):
        loads(b"<html>", what="the answer")
    with pytest.raises(JsonInputError, match="not UTF-8"):
        loads(b'"\xff\xfe\xfd', what="the answer")
    with pytest.raises(JsonInputError, match="is 11 bytes, over the 10-byte limit"):
        loads(b'{"a": "bc"}', max_bytes=10)
    assert loads(b'{"a": "b"}', max_bytes=10) == {"a": "b"}


def test_a_custom_depth_bound() -> None:
    assert loads("[[1]]", max_depth=2) == [[1]]
    with pytest.raises(JsonInputError, match="deeper than 1 levels"):
        loads("[[1]]", max_depth=1)
