"""The benchmarks' pure helpers: percentiles and the Markdown table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import common

floats = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


@given(st.lists(floats, min_size=1), st.floats(min_value=0, max_value=100))
def test_percentile_is_a_value_with_enough_below_it(values: list[float], p: float) -> None:
    got = common.percentile(values, p)
    assert got in values
    at_or_below = sum(v <= got for v in values)
    assert at_or_below / len(values) >= p / 100
    assert sum(v < got for v in values) / len(values) < max(p / 100, 1 / len(values)) + 1e-9


def test_percentile_known_values_and_bad_input() -> None:
    assert common.percentile([3, 1, 2, 4], 50) == 2
    assert common.percentile(list(range(1, 101)), 99) == 99
    assert common.percentile([5], 0) == 5
    with pytest.raises(ValueError, match="no values"):
        common.percentile([], 50)
    with pytest.raises(ValueError, match="between 0 and 100"):
        common.percentile([1], 101)


# Table cells are one line of text: letters, digits, punctuation, symbols and spaces.
cells = st.text(alphabet=st.characters(categories=["L", "N", "P", "S", "Zs"],
                                      exclude_characters="|"), max_size=12)


@given(st.lists(cells, min_size=1, max_size=5).flatmap(
    lambda headers: st.tuples(st.just(headers), st.lists(
        st.lists(cells, min_size=len(headers), max_size=len(headers)), max_size=6))))
def test_table_keeps_every_cell_in_aligned_columns(data: tuple[list[str], list[list[str]]]
                                                   ) -> None:
    headers, rows = data
    lines = common.table(headers, rows).splitlines()
    assert len(lines) == len(rows) + 2
    assert len({len(line) for line in lines}) == 1
    for line, row in zip([lines[0], *lines[2:]], [headers, *rows], strict=True):
        assert [c.strip() for c in line[1:-1].split("|")] == [c.strip() for c in row]


def test_table_right_aligns_numbers() -> None:
    text = common.table(["name", "n"], [["a", "1"], ["bb", "1,000"]])
    assert text.splitlines() == ["| name |     n |", "|------|------:|",
                                 "| a    |     1 |", "| bb   | 1,000 |"]
