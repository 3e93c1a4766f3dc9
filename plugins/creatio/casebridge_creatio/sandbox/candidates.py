"""Which rows a ``$filter`` can match, narrowed with the store's equality indexes, so the
evaluator only visits those instead of every row of the table.

The answer is a superset: the engine still evaluates the whole filter on each candidate, so
OData semantics stay exactly those of :func:`evaluate.evaluate`. Only ``path eq 'text'`` and
``path eq <guid>`` narrow (a navigation path such as ``Contact/Email`` goes through the
lookup column's index); ``and`` intersects, ``or`` unites, anything else cannot narrow.
"""

from __future__ import annotations

from collections.abc import Set

from .evaluate import resolve_path
from .query import Compare, Expr, Literal, Logical, Prop
from .schema import GUID, TEXT, Entity
from .store import Store


def candidate_ids(expr: Expr, entity: Entity, store: Store) -> Set[str] | None:
    """Ids of every row of ``entity`` the bound filter ``expr`` can be true for, or None
    when the indexes cannot narrow it (scan every row)."""
    if isinstance(expr, Logical):
        left = candidate_ids(expr.left, entity, store)
        right = candidate_ids(expr.right, entity, store)
        if expr.op == "and":
            # A row matches only where both sides are true: either side's set bounds it.
            if left is None or right is None:
                return left if right is None else right
            return left & right
        if left is None or right is None:
            return None
        return left | right
    if isinstance(expr, Compare) and expr.op == "eq":
        pair = _prop_and_text(expr.left, expr.right) or _prop_and_text(expr.right, expr.left)
        if pair is not None:
            return _ids_at(entity, pair[0].path, pair[1], store)
    return None


def _prop_and_text(prop: Expr, literal: Expr) -> tuple[Prop, str] | None:
    # Null never equals a stored string, and other types are not indexed.
    if (isinstance(prop, Prop) and isinstance(literal, Literal)
            and literal.kind in (TEXT, GUID) and isinstance(literal.value, str)):
        return prop, literal.value
    return None


def _ids_at(entity: Entity, path: tuple[str, ...], value: str, store: Store) -> Set[str]:
    """Ids of ``entity`` rows whose ``path`` leads to ``value``: the last entity's matches,
    then back through each lookup column to the rows pointing at them."""
    hops, _ = resolve_path(entity, path)
    last, column = hops[-1]
    ids: Set[str] = store.ids_where(last.name, column, value)
    for hop_entity, lookup in reversed(hops[:-1]):
        ids = set().union(*(store.ids_where(hop_entity.name, lookup, i) for i in ids))
    return ids
