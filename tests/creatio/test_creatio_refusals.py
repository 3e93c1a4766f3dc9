"""The pure side of "a mapped field must never cost a handoff": which column a Creatio 400
refuses, and the "Fields left empty:" line that tells the rep."""

from __future__ import annotations

from casebridge_creatio.refusals import (
    LEFT_EMPTY_HEADING,
    add_left_empty,
    left_out_line,
    refused_column,
)
from hypothesis import given
from hypothesis import strategies as st

columns = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True)
texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=400)


def test_refused_column_reads_creatios_messages() -> None:
    assert (
        refused_column(
            "The property 'ProductName' does not exist on type 'Terrasoft.Configuration.Case'. "
            "Make sure to only use property names that are defined by the type."
        )
        == "ProductName"
    )
    assert (
        refused_column(
            "Cannot convert the literal \"High\" to the expected type 'Edm.Guid' of property "
            "'PriorityId' on type 'Terrasoft.Configuration.Case'."
        )
        == "PriorityId"
    )
    assert refused_column("Required column(s) Title of 'Activity' must have a value.") is None
    assert refused_column("The request body is not valid JSON.") is None


@given(columns, st.sampled_from(["Case", "Activity"]))
def test_refused_column_finds_any_column_name(column: str, entity: str) -> None:
    message = f"The property '{column}' does not exist on type 'Terrasoft.Configuration.{entity}'."
    assert refused_column(message) == column


@given(columns, texts, texts)
def test_left_out_line_is_one_line_naming_column_and_value(
    column: str, value: str, message: str
) -> None:
    line = left_out_line(column, value, message)
    assert "\n" not in line and "\r" not in line
    assert line.startswith(f"{column}: Creatio refused this column, so ")
    assert len(line) < len(column) + 600


def test_left_out_line_keeps_creatios_words() -> None:
    line = left_out_line(
        "ProductName", "Printer\nX200", "The property 'ProductName' does not exist."
    )
    assert line == (
        "ProductName: Creatio refused this column, so 'Printer X200' was not "
        "written (The property 'ProductName' does not exist.)"
    )


def test_add_left_empty_joins_the_cores_list() -> None:
    described = (
        "Printer jams.\n\nFields left empty:\n- CategoryId: not one of the values\n\n"
        "Handed off: asked for a person"
    )
    assert add_left_empty(described, "ProductName: refused") == (
        "Printer jams.\n\nFields left empty:\n- CategoryId: not one of the values\n"
        "- ProductName: refused\n\nHanded off: asked for a person"
    )
    assert add_left_empty("Printer jams.\n", "ProductName: refused") == (
        "Printer jams.\n\nFields left empty:\n- ProductName: refused"
    )
    assert (
        add_left_empty("", "ProductName: refused") == "Fields left empty:\n- ProductName: refused"
    )


@given(texts, columns, texts)
def test_add_left_empty_only_adds_the_line(description: str, column: str, note: str) -> None:
    line = f"{column}: {note}"
    result = add_left_empty(description, line)
    lines, before = result.split("\n"), description.split("\n")
    item = "- " + " ".join(line.split())
    if LEFT_EMPTY_HEADING in before:
        # Exactly one line was added, and it is the item, right after a list item or the
        # heading; everything that was there is still there, in order.
        added = [
            i
            for i in range(len(lines))
            if lines[i] == item and lines[:i] + lines[i + 1 :] == before
        ]
        assert added and (
            lines[added[0] - 1] == LEFT_EMPTY_HEADING or lines[added[0] - 1].startswith("- ")
        )
    else:
        head = description.rstrip("\n")
        assert result == (f"{head}\n\n" if head else "") + f"{LEFT_EMPTY_HEADING}\n{item}"


@given(
    texts.filter(lambda t: LEFT_EMPTY_HEADING not in t.split("\n")),
    st.lists(columns, min_size=1, max_size=5),
)
def test_several_refusals_make_one_list(description: str, refused: list[str]) -> None:
    result = description
    for column in refused:
        result = add_left_empty(result, f"{column}: refused")
    head = description.rstrip("\n")
    items = "\n".join(f"- {c}: refused" for c in refused)
    assert result == (f"{head}\n\n" if head else "") + f"{LEFT_EMPTY_HEADING}\n{items}"
