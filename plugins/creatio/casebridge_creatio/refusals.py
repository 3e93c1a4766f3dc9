"""Creatio refusing one column of a write, and the note that tells the rep about it.

A mapped field (a ``[[fields.rules]]`` rule, an AI field) may name a column this Creatio does
not have, or carry a value the column cannot take. Creatio then refuses the whole record with
a 400 that names the property. The plugin leaves that field out, writes the case anyway and
adds a line under "Fields left empty:" in the description, the list where the core already
notes fields a plugin left empty. Pure text work, no I/O.
"""

from __future__ import annotations

import re

LEFT_EMPTY_HEADING = "Fields left empty:"
_VALUE_MAX = 200
_MESSAGE_MAX = 300

# The OData messages that name a single refused property: an unknown column, and a value
# that does not convert to the column's type.
_REFUSED_PROPERTY = (
    re.compile(r"The property '(?P<column>[A-Za-z_][A-Za-z0-9_]*)' does not exist"),
    re.compile(
        r"Cannot convert the literal .* of property '(?P<column>[A-Za-z_][A-Za-z0-9_]*)'", re.DOTALL
    ),
)


def refused_column(message: str) -> str | None:
    """The column a Creatio 400 message refuses, or None when it names none."""
    for pattern in _REFUSED_PROPERTY:
        found = pattern.search(message)
        if found:
            return found.group("column")
    return None


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def left_out_line(column: str, value: str, message: str) -> str:
    """The rep's line for a field Creatio refused: which column, what value, and Creatio's
    own words."""
    shown = _one_line(value, _VALUE_MAX)
    return (
        f"{column}: Creatio refused this column, so {shown!r} was not written "
        f"({_one_line(message, _MESSAGE_MAX)})"
    )


def add_left_empty(description: str, line: str) -> str:
    """``description`` with ``- line`` added to its "Fields left empty:" list: after the
    list's last item when the list is there, else as a new list at the end."""
    item = "- " + _one_line(line, _VALUE_MAX + _MESSAGE_MAX + 200)
    lines = description.split("\n")
    try:
        start = lines.index(LEFT_EMPTY_HEADING)
    except ValueError:
        body = description.rstrip("\n")
        return (
            f"{body}\n\n{LEFT_EMPTY_HEADING}\n{item}" if body else f"{LEFT_EMPTY_HEADING}\n{item}"
        )
    end = start + 1
    while end < len(lines) and lines[end].startswith("- "):
        end += 1
    return "\n".join([*lines[:end], item, *lines[end:]])
