"""Building OData 4 query strings for Creatio, with every value quoted and escaped.

Pure functions, no I/O. Filters are built from small immutable expressions::

    where = eq("ContactId", Guid(contact_id)) & ~eq("StatusId", Guid(closed))
    where = any_of("Email", ["a@x.org", "b@x.org"]) | contains("Name", "O'Brien")
    query_string(filter=where, select=["Id", "Number"], orderby="CreatedOn desc", top=1)

Customer text only ever enters a filter as a quoted literal (``'...'`` with ``''`` for a
quote), so it cannot change a filter's meaning. A GUID is compared bare (``Id eq 1f...``,
Creatio refuses the OData 3 ``guid'...'`` form) and must be wrapped in :class:`Guid` (or be a
:class:`uuid.UUID`), which refuses anything that is not a GUID.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from urllib.parse import quote

__all__ = [
    "Expr",
    "Guid",
    "all_of",
    "any_expr",
    "any_of",
    "compare",
    "contains",
    "endswith",
    "eq",
    "format_datetime",
    "ge",
    "gt",
    "is_guid",
    "le",
    "literal",
    "lt",
    "ne",
    "not_",
    "query_string",
    "startswith",
]

# A property path: Name, Contact/Id, Owner/Name.
_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*")
_ORDER = re.compile(r"(?P<path>[^\s]+)(\s+(?P<dir>asc|desc))?")
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_OPERATORS = ("eq", "ne", "gt", "ge", "lt", "le")

# Binding strength: or < and < not < a comparison or function call.
_OR, _AND, _NOT, _ATOM = 1, 2, 3, 4


def is_guid(value: object) -> bool:
    """True for a GUID written as OData expects it: 8-4-4-4-12 hex digits, no braces."""
    return isinstance(value, str) and _GUID.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Guid:
    """A GUID to compare bare. Raises ValueError for anything else."""

    value: str

    def __post_init__(self) -> None:
        if not is_guid(self.value):
            raise ValueError(f"expected a GUID, got {self.value!r}")
        object.__setattr__(self, "value", self.value.lower())


@dataclass(frozen=True, slots=True)
class Expr:
    """A built filter. Combine with ``&`` (and), ``|`` (or) and ``~`` (not)."""

    text: str
    strength: int = _ATOM

    def __and__(self, other: Expr) -> Expr:
        return all_of(self, other)

    def __or__(self, other: Expr) -> Expr:
        return any_expr(self, other)

    def __invert__(self) -> Expr:
        return not_(self)

    def __str__(self) -> str:
        return self.text


def _operand(expr: Expr, strength: int) -> str:
    return expr.text if expr.strength >= strength else f"({expr.text})"


def all_of(*exprs: Expr) -> Expr:
    """``a and b and ...``; one expression is returned as it is."""
    return _join(exprs, "and", _AND)


def any_expr(*exprs: Expr) -> Expr:
    """``a or b or ...``; one expression is returned as it is."""
    return _join(exprs, "or", _OR)


def _join(exprs: Sequence[Expr], word: str, strength: int) -> Expr:
    if not exprs:
        raise ValueError(f"'{word}' needs at least one expression")
    for expr in exprs:
        if not isinstance(expr, Expr):
            raise TypeError(f"expected a filter expression, got {type(expr).__name__}")
    if len(exprs) == 1:
        return exprs[0]
    return Expr(f" {word} ".join(_operand(e, strength + 1) for e in exprs), strength)


def not_(expr: Expr) -> Expr:
    """``not (expr)``."""
    if not isinstance(expr, Expr):
        raise TypeError(f"expected a filter expression, got {type(expr).__name__}")
    return Expr(f"not ({expr.text})", _NOT)


def _path(column: str) -> str:
    if not isinstance(column, str) or not _PATH.fullmatch(column):
        raise ValueError(f"{column!r} is not a property name or path")
    return column


def format_datetime(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as Creatio wants it in filters and bodies.

    A naive datetime is refused: the bridge keeps every time timezone-aware.
    """
    if value.tzinfo is None:
        raise ValueError(f"datetime {value.isoformat()} has no timezone")
    utc = value.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}"
    return text + "Z"


Value = str | int | float | Decimal | bool | datetime | date | Guid | uuid.UUID | None


def literal(value: Value) -> str:
    """One value as an OData literal: strings quoted with ``''`` escaping, GUIDs bare,
    datetimes ISO with ``Z``, ``true``/``false``, numbers, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Guid):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        if isinstance(value, float) and (value != value or value in (float("inf"), -float("inf"))):
            raise ValueError(f"{value!r} cannot be written in an OData filter")
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"cannot write a {type(value).__name__} in an OData filter")


def compare(column: str, op: str, value: Value) -> Expr:
    """``column op value`` for op in eq, ne, gt, ge, lt, le."""
    if op not in _OPERATORS:
        raise ValueError(f"unknown comparison {op!r}; expected one of {', '.join(_OPERATORS)}")
    return Expr(f"{_path(column)} {op} {literal(value)}")


def eq(column: str, value: Value) -> Expr:
    return compare(column, "eq", value)


def ne(column: str, value: Value) -> Expr:
    return compare(column, "ne", value)


def gt(column: str, value: Value) -> Expr:
    return compare(column, "gt", value)


def ge(column: str, value: Value) -> Expr:
    return compare(column, "ge", value)


def lt(column: str, value: Value) -> Expr:
    return compare(column, "lt", value)


def le(column: str, value: Value) -> Expr:
    return compare(column, "le", value)


def _function(name: str, column: str, text: str) -> Expr:
    if not isinstance(text, str):
        raise TypeError(f"{name}() compares text, got {type(text).__name__}")
    return Expr(f"{name}({_path(column)},{literal(text)})")


def contains(column: str, text: str) -> Expr:
    return _function("contains", column, text)


def startswith(column: str, text: str) -> Expr:
    return _function("startswith", column, text)


def endswith(column: str, text: str) -> Expr:
    return _function("endswith", column, text)


def any_of(column: str, values: Iterable[Value]) -> Expr:
    """``column eq v1 or column eq v2 ...``: Creatio has no ``in`` operator."""
    exprs = [eq(column, v) for v in values]
    if not exprs:
        raise ValueError(f"any_of({column!r}) needs at least one value")
    return any_expr(*exprs)


def _names(option: str, names: str | Sequence[str]) -> str:
    items = [names] if isinstance(names, str) else list(names)
    if not items:
        raise ValueError(f"{option} needs at least one property")
    return ",".join(_path(n) for n in items)


def _orderby(orderby: str | Sequence[str]) -> str:
    items = [orderby] if isinstance(orderby, str) else list(orderby)
    out = []
    for item in items:
        match = _ORDER.fullmatch(item.strip())
        if not match:
            raise ValueError(f"$orderby: {item!r} is not 'Property [asc|desc]'")
        part = _path(match["path"])
        out.append(f"{part} {match['dir']}" if match["dir"] else part)
    if not out:
        raise ValueError("$orderby needs at least one property")
    return ",".join(out)


def _count(option: str, value: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{option} must be a whole number of 0 or more, got {value!r}")
    return str(value)


# Characters RFC 3986 allows unencoded in a query that OData uses for readability.
_SAFE = "/,()$:'@"


def query_string(
    *,
    filter: Expr | None = None,
    select: str | Sequence[str] | None = None,
    orderby: str | Sequence[str] | None = None,
    top: int | None = None,
    skip: int | None = None,
    expand: str | Sequence[str] | None = None,
    count: bool = False,
) -> str:
    """The query part of an OData URL (without the ``?``), every value percent-encoded.

    ``expand`` takes navigation property names; ``count`` adds ``$count=true``.
    """
    options: list[tuple[str, str]] = []
    if filter is not None:
        if not isinstance(filter, Expr):
            raise TypeError("$filter must be built with casebridge_creatio.odata")
        options.append(("$filter", filter.text))
    if select is not None:
        options.append(("$select", _names("$select", select)))
    if expand is not None:
        options.append(("$expand", _names("$expand", expand)))
    if orderby is not None:
        options.append(("$orderby", _orderby(orderby)))
    if top is not None:
        options.append(("$top", _count("$top", top)))
    if skip is not None:
        options.append(("$skip", _count("$skip", skip)))
    if count:
        options.append(("$count", "true"))
    return "&".join(f"{key}={quote(value, safe=_SAFE)}" for key, value in options)
