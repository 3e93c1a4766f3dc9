"""OData 4 query options as Creatio accepts them: a tokenizer and recursive-descent parser for
``$filter`` and ``$orderby``, a binder that checks names and types against the entity schema,
an evaluator over stored rows, and a formatter that writes an expression back as text.

Pure logic: no I/O. Every malformed input raises :class:`QueryError` with a message in the
style of Microsoft.OData, never another exception.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .schema import (
    BINARY,
    BOOL,
    DATETIME,
    DECIMAL,
    ENTITIES,
    GUID,
    INT,
    TEXT,
    Entity,
    format_datetime,
    parse_datetime,
)

NULL = "null"
COMPARISONS = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan",
               "ge": "GreaterThanOrEqual", "lt": "LessThan", "le": "LessThanOrEqual"}
FUNCTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "contains": ((TEXT, TEXT), BOOL),
    "startswith": ((TEXT, TEXT), BOOL),
    "endswith": ((TEXT, TEXT), BOOL),
    "tolower": ((TEXT,), TEXT),
    "toupper": ((TEXT,), TEXT),
    "length": ((TEXT,), INT),
}
KEYWORDS = frozenset({"and", "or", "not", "true", "false", "null", *COMPARISONS})
MAX_DEPTH = 100


class QueryError(ValueError):
    """A query option Creatio would refuse with 400; the message says what and where."""


@dataclass(frozen=True, slots=True)
class Literal:
    """``kind`` is an Edm type name or ``"null"``; ``value`` is str (strings and lower-case
    GUIDs), int, Decimal, bool, datetime, or None."""

    kind: str
    value: Any


@dataclass(frozen=True, slots=True)
class Prop:
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Compare:
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Logical:
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


@dataclass(frozen=True, slots=True)
class Call:
    name: str
    args: tuple[Expr, ...]


Expr = Literal | Prop | Compare | Logical | Not | Call


@dataclass(frozen=True, slots=True)
class OrderKey:
    path: tuple[str, ...]
    descending: bool = False


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "str", "guid", "datetime", "num", "ident", or the punctuation itself
    text: str
    pos: int


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<str>'(?:[^']|'')*')
  | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?![\w-])
  | (?P<datetime>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?
        (?:Z|[+-]\d{2}:\d{2}))?)(?![\w:.+-])
  | (?P<num>-?\d+(?:\.\d+)?)(?![\w.])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[(),/])
    """,
    re.VERBOSE,
)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            if text[pos] == "'":
                raise QueryError(f"There is an unterminated string literal at position {pos} "
                                 f"in '{text}'.")
            raise QueryError(f"Syntax error: character '{text[pos]}' is not valid at position "
                             f"{pos} in '{text}'.")
        kind = m.lastgroup or ""
        if kind != "ws":
            value = m.group(kind)
            tokens.append(Token(value if kind == "punct" else kind, value, pos))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def peek_word(self) -> str | None:
        tok = self.peek()
        return tok.text if tok is not None and tok.kind == "ident" else None

    def fail(self, what: str) -> QueryError:
        tok = self.peek()
        where = f"at position {tok.pos}" if tok else "at the end"
        return QueryError(f"Syntax error {where} in '{self.text}': {what}.")

    def take(self, kind: str) -> Token:
        tok = self.peek()
        if tok is None or tok.kind != kind:
            raise self.fail(f"expected '{kind}'")
        self.i += 1
        return tok

    def done(self) -> None:
        if self.peek() is not None:
            raise self.fail("unexpected token")

    def expr(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(f"The query '{self.text[:80]}' is nested too deeply "
                             f"(more than {MAX_DEPTH} levels).")
        try:
            return self.or_expr()
        finally:
            self.depth -= 1

    def or_expr(self) -> Expr:
        left = self.and_expr()
        while self.peek_word() == "or":
            self.i += 1
            left = Logical("or", left, self.and_expr())
        return left

    def and_expr(self) -> Expr:
        left = self.not_expr()
        while self.peek_word() == "and":
            self.i += 1
            left = Logical("and", left, self.not_expr())
        return left

    def not_expr(self) -> Expr:
        if self.peek_word() == "not":
            self.i += 1
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise QueryError(f"The query '{self.text[:80]}' is nested too deeply.")
            try:
                return Not(self.not_expr())
            finally:
                self.depth -= 1
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.primary()
        word = self.peek_word()
        if word in COMPARISONS:
            self.i += 1
            return Compare(word, left, self.primary())
        return left

    def primary(self) -> Expr:
        tok = self.peek()
        if tok is None:
            raise self.fail("expected an expression")
        if tok.kind == "(":
            self.i += 1
            inner = self.expr()
            self.take(")")
            return inner
        self.i += 1
        if tok.kind == "str":
            return Literal(TEXT, tok.text[1:-1].replace("''", "'"))
        if tok.kind == "guid":
            return Literal(GUID, tok.text.lower())
        if tok.kind == "datetime":
            value = parse_datetime(tok.text)
            if value is None:
                raise QueryError(f"'{tok.text}' is not a valid date and time.")
            return Literal(DATETIME, value)
        if tok.kind == "num":
            if "." in tok.text:
                return Literal(DECIMAL, Decimal(tok.text))
            return Literal(INT, int(tok.text))
        if tok.kind == "ident":
            return self.word(tok)
        self.i -= 1
        raise self.fail("expected an expression")

    def word(self, tok: Token) -> Expr:
        if tok.text == "true":
            return Literal(BOOL, True)
        if tok.text == "false":
            return Literal(BOOL, False)
        if tok.text == "null":
            return Literal(NULL, None)
        if tok.text in KEYWORDS:
            self.i -= 1
            raise self.fail(f"'{tok.text}' is not valid here")
        nxt = self.peek()
        if nxt is not None and nxt.kind == "(":
            if tok.text not in FUNCTIONS:
                raise QueryError(f"An unknown function with name '{tok.text}' was found.")
            self.i += 1
            args = [self.expr()]
            while self.peek() is not None and self.peek().kind == ",":  # type: ignore[union-attr]
                self.i += 1
                args.append(self.expr())
            self.take(")")
            return Call(tok.text, tuple(args))
        path = [tok.text]
        while self.peek() is not None and self.peek().kind == "/":  # type: ignore[union-attr]
            self.i += 1
            path.append(self.take("ident").text)
        return Prop(tuple(path))


def parse_filter(text: str) -> Expr:
    """Parse a ``$filter`` value. Raises :class:`QueryError`."""
    parser = _Parser(text)
    expr = parser.expr()
    parser.done()
    return expr


def parse_orderby(text: str) -> list[OrderKey]:
    """Parse ``$orderby``: comma-separated property paths, each optionally ``asc``/``desc``."""
    parser = _Parser(text)
    keys: list[OrderKey] = []
    while True:
        first = parser.take("ident")
        path = [first.text]
        while parser.peek() is not None and parser.peek().kind == "/":  # type: ignore[union-attr]
            parser.i += 1
            path.append(parser.take("ident").text)
        descending = False
        if parser.peek_word() in ("asc", "desc"):
            descending = parser.peek_word() == "desc"
            parser.i += 1
        keys.append(OrderKey(tuple(path), descending))
        if parser.peek() is None:
            return keys
        parser.take(",")


def parse_select(text: str) -> list[str]:
    """Parse ``$select``: comma-separated column names."""
    names = [part.strip() for part in text.split(",")]
    for name in names:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise QueryError(f"Syntax error in $select '{text}': '{name}' is not a property "
                             "name.")
    return names


def parse_expand(text: str) -> dict[str, list[str] | None]:
    """Parse ``$expand``: navigation names, each optionally with ``($select=A,B)``.

    Returns each navigation with its selected columns (None for all).
    """
    result: dict[str, list[str] | None] = {}
    pos = 0
    item_re = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\(\s*\$select=([^()]*)\))?\s*(,|$)")
    while pos < len(text) or not result:
        m = item_re.match(text, pos)
        if m is None or m.end() == pos:
            raise QueryError(f"Syntax error in $expand '{text}' at position {pos}.")
        result[m.group(1)] = parse_select(m.group(2)) if m.group(2) is not None else None
        pos = m.end()
        if m.group(3) == "" and pos < len(text):
            raise QueryError(f"Syntax error in $expand '{text}' at position {pos}.")
        if m.group(3) == ",":
            if pos >= len(text):
                raise QueryError(f"Syntax error in $expand '{text}': nothing after ','.")
        elif pos >= len(text):
            break
    return result


# --- formatting -----------------------------------------------------------------------------


def quote(value: str) -> str:
    """A string literal: single quotes, an inner quote doubled."""
    return "'" + value.replace("'", "''") + "'"


def format_literal(lit: Literal) -> str:
    if lit.kind == TEXT:
        return quote(lit.value)
    if lit.kind == BOOL:
        return "true" if lit.value else "false"
    if lit.kind == NULL:
        return "null"
    if lit.kind == DATETIME:
        text = format_datetime(lit.value)
        return text
    if lit.kind == DECIMAL:
        text = format(lit.value, "f")
        return text if "." in text else text + ".0"
    return str(lit.value)


def format_filter(expr: Expr) -> str:
    """Write an expression as ``$filter`` text; ``parse_filter`` reads it back equal."""
    if isinstance(expr, Literal):
        return format_literal(expr)
    if isinstance(expr, Prop):
        return "/".join(expr.path)
    if isinstance(expr, Call):
        return f"{expr.name}({', '.join(format_filter(a) for a in expr.args)})"
    if isinstance(expr, Not):
        return f"not {_wrapped(expr.operand)}"
    if isinstance(expr, Compare | Logical):
        return f"{_wrapped(expr.left)} {expr.op} {_wrapped(expr.right)}"
    raise TypeError(f"not a filter expression: {expr!r}")


def _wrapped(expr: Expr) -> str:
    text = format_filter(expr)
    return f"({text})" if isinstance(expr, Compare | Logical | Not) else text


# --- binding (names and types) --------------------------------------------------------------

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

