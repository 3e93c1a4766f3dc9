"""The block of addresses ``casebridge run`` prints once everything has started: the bridge,
the dashboard and whatever plugins contribute (sandbox pages with their demo logins, the
mail catcher). Pure formatting, so it can be tested on any input."""

from __future__ import annotations

from collections.abc import Sequence

from .contributions import Address

MAX_LABEL = 28


def _flat(text: str) -> str:
    # One line per address whatever a plugin put in it.
    return " ".join(text.split())


def render_block(addresses: Sequence[Address], title: str = "Open these:") -> str:
    """``addresses`` as an aligned block, one line each: label, where, and the note in
    parentheses. Labels longer than :data:`MAX_LABEL` are cut with an ellipsis."""
    rows = []
    for address in addresses:
        label = _flat(address.label)
        if len(label) > MAX_LABEL:
            label = label[: MAX_LABEL - 1] + "…"
        note = _flat(address.note)
        rows.append((label, _flat(address.where) + (f"  ({note})" if note else "")))
    width = max((len(label) for label, _ in rows), default=0)
    lines = [title, *(f"  {label.ljust(width)}  {where}" for label, where in rows)]
    return "\n".join(lines)
