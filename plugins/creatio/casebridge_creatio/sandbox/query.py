"""OData 4 query options as Creatio accepts them: a tokenizer and recursive-descent parser for
``$filter`` and ``$orderby``, and a formatter that writes an expression back as text.
Checking names and types against the schema and evaluating over rows: :mod:`.evaluate`.

Pure logic: no I/O. Every malformed input raises :class:`QueryError` with a message in the
style of Microsoft.OData, never another exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .schema import (
    BOOL,
    DATETIME,
    DECIMAL,
    GUID,
    INT,
    TEXT,
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
