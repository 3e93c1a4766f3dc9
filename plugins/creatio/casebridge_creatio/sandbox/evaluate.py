"""The binder and the evaluator of the sandbox's OData queries: names and types checked
against the entity schema, then a parsed ``$filter`` or ``$orderby`` applied to stored rows.

Pure logic: no I/O. A name or type the schema does not have raises :class:`QueryError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from .query import (
    COMPARISONS,
    FUNCTIONS,
    NULL,
    Call,
    Compare,
    Expr,
    Literal,
    Logical,
    Not,
    OrderKey,
    Prop,
    QueryError,
)
from .schema import (
    BINARY,
    BOOL,
    DATETIME,
    DECIMAL,
    ENTITIES,
    INT,
    Entity,
    parse_datetime,
)

_NUMERIC = {INT, DECIMAL}


def resolve_path(entity: Entity, path: tuple[str, ...]) -> tuple[list[tuple[Entity, str]], str]:
    """Follow ``Contact/Id`` from ``entity``: the lookup columns crossed, and the final type."""
    hops: list[tuple[Entity, str]] = []
    current = entity
    for i, name in enumerate(path):
        last = i == len(path) - 1
        if not last:
            nav = current.navs.get(name)
            if nav is None or nav.ref is None or nav.ref not in ENTITIES:
                raise QueryError(f"Could not find a navigation property named '{name}' on type "
                                 f"'{current.type_name}'.")
            hops.append((current, nav.name))
            current = ENTITIES[nav.ref]
            continue
        column = current.columns.get(name)
        if column is None:
            raise QueryError(f"Could not find a property named '{name}' on type "
                             f"'{current.type_name}'.")
        if column.type == BINARY:
            raise QueryError(f"The property '{name}' of type '{current.type_name}' cannot be "
                             "used in a query.")
        hops.append((current, name))
        return hops, column.type
    raise QueryError("An empty property path is not valid.")


def bind_filter(expr: Expr, entity: Entity) -> None:
    """Check names and types; the whole filter must be Boolean. Raises :class:`QueryError`."""
    kind = _type_of(expr, entity)
    if kind not in (BOOL, NULL):
        raise QueryError(f"The $filter expression must evaluate to a single boolean value, "
                         f"not '{kind}'.")


def _type_of(expr: Expr, entity: Entity) -> str:
    if isinstance(expr, Literal):
        return expr.kind
    if isinstance(expr, Prop):
        return resolve_path(entity, expr.path)[1]
    if isinstance(expr, Not):
        if _type_of(expr.operand, entity) != BOOL:
            raise QueryError("The 'not' operator requires a Boolean operand.")
        return BOOL
    if isinstance(expr, Logical):
        for side in (expr.left, expr.right):
            if _type_of(side, entity) != BOOL:
                raise QueryError(f"The '{expr.op}' operator requires Boolean operands.")
        return BOOL
    if isinstance(expr, Call):
        params, result = FUNCTIONS[expr.name]
        if len(expr.args) != len(params):
            raise QueryError(f"The function '{expr.name}' takes {len(params)} argument(s), "
                             f"not {len(expr.args)}.")
        for arg, want in zip(expr.args, params, strict=True):
            got = _type_of(arg, entity)
            if got not in (want, NULL):
                raise QueryError(f"No function signature for the function with name "
                                 f"'{expr.name}' matches the specified arguments ({got}).")
        return result
    if isinstance(expr, Compare):
        left, right = _type_of(expr.left, entity), _type_of(expr.right, entity)
        compatible = (left == right or NULL in (left, right)
                      or (left in _NUMERIC and right in _NUMERIC))
        if not compatible:
            raise QueryError("A binary operator with incompatible types was detected. Found "
                             f"operand types '{left}' and '{right}' for operator kind "
                             f"'{COMPARISONS[expr.op]}'.")
        if NULL in (left, right) and expr.op not in ("eq", "ne"):
            raise QueryError(f"The operator '{expr.op}' cannot compare with null.")
        if BOOL in (left, right) and expr.op not in ("eq", "ne"):
            raise QueryError(f"The operator '{expr.op}' cannot compare Boolean values.")
        return BOOL
    raise QueryError(f"Unsupported expression {expr!r}.")


# --- evaluation -----------------------------------------------------------------------------

Resolver = Callable[[str, str], dict[str, Any] | None]


def path_value(row: dict[str, Any], entity: Entity, path: tuple[str, ...],
               resolve: Resolver) -> Any:
    """The value at ``path`` from ``row``, following lookups with ``resolve(entity, id)``."""
    hops, kind = resolve_path(entity, path)
    current: dict[str, Any] | None = row
    for hop_entity, column_name in hops[:-1]:
        ref_id = current.get(column_name) if current else None
        ref = hop_entity.columns[column_name].ref
        current = resolve(ref, ref_id) if ref and ref_id else None
    if current is None:
        return None
    return _typed(current.get(hops[-1][1]), kind)


def _typed(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == DATETIME and isinstance(value, str):
        return parse_datetime(value)
    if kind == DECIMAL and not isinstance(value, Decimal):
        return Decimal(str(value))
    return value


def evaluate(expr: Expr, row: dict[str, Any], entity: Entity, resolve: Resolver) -> Any:
    """Evaluate a bound expression on a stored row. Comparisons with null are false except
    ``eq null``/``ne null``, as in SQL behind Creatio."""
    if isinstance(expr, Literal):
        return expr.value
    if isinstance(expr, Prop):
        return path_value(row, entity, expr.path, resolve)
    if isinstance(expr, Not):
        inner = evaluate(expr.operand, row, entity, resolve)
        return None if inner is None else not inner
    if isinstance(expr, Logical):
        left = evaluate(expr.left, row, entity, resolve)
        right = evaluate(expr.right, row, entity, resolve)
        if expr.op == "and":
            return bool(left) and bool(right)
        return bool(left) or bool(right)
    if isinstance(expr, Call):
        args = [evaluate(a, row, entity, resolve) for a in expr.args]
        return _call(expr.name, args)
    if isinstance(expr, Compare):
        return _compare(expr.op, evaluate(expr.left, row, entity, resolve),
                        evaluate(expr.right, row, entity, resolve))
    raise TypeError(f"not a filter expression: {expr!r}")


def _call(name: str, args: list[Any]) -> Any:
    if any(a is None for a in args):
        return None
    # SQL Server's default collation compares text case-insensitively.
    if name == "contains":
        return args[1].casefold() in args[0].casefold()
    if name == "startswith":
        return args[0].casefold().startswith(args[1].casefold())
    if name == "endswith":
        return args[0].casefold().endswith(args[1].casefold())
    if name == "tolower":
        return args[0].lower()
    if name == "toupper":
        return args[0].upper()
    return len(args[0])


def _compare(op: str, left: Any, right: Any) -> bool:
    if left is None or right is None:
        if op == "eq":
            return left is None and right is None
        if op == "ne":
            return not (left is None and right is None)
        return False
    if isinstance(left, str) and isinstance(right, str):
        left, right = left.casefold(), right.casefold()
    try:
        if op == "eq":
            return bool(left == right)
        if op == "ne":
            return bool(left != right)
        if op == "gt":
            return bool(left > right)
        if op == "ge":
            return bool(left >= right)
        if op == "lt":
            return bool(left < right)
        return bool(left <= right)
    except (TypeError, InvalidOperation):
        return False


def sort_rows(rows: list[dict[str, Any]], keys: Iterable[OrderKey], entity: Entity,
              resolve: Resolver) -> list[dict[str, Any]]:
    """Sort by each key in turn; nulls first ascending, last descending (SQL Server order)."""
    result = list(rows)
    for key in reversed(list(keys)):
        def sort_key(row: dict[str, Any], key: OrderKey = key) -> tuple[bool, Any]:
            value = path_value(row, entity, key.path, resolve)
            if isinstance(value, str):
                value = value.casefold()
            return (value is not None, value if value is not None else 0)
        result.sort(key=sort_key, reverse=key.descending)
    return result


def bind_orderby(keys: Iterable[OrderKey], entity: Entity) -> None:
    for key in keys:
        resolve_path(entity, key.path)

