"""A small independent parser for OData filters, shared by the odata tests and the fake
Creatio: it knows nothing of casebridge_creatio.odata, so it checks that module from outside."""

from __future__ import annotations

import re
from datetime import datetime

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^']|'')*')
      | (?P<dt>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)
      | (?P<guid>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?![\w-]))
      | (?P<num>-?\d+(?:\.\d+)?(?:e[+-]?\d+)?(?![\w-]))
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*(?:/[A-Za-z_][A-Za-z0-9_]*)*)
      | (?P<punct>[(),])
    )""",
    re.VERBOSE,
)


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        assert match and match.end() > pos, f"untokenizable at {pos}: {text[pos:]!r}"
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match[kind]))
        pos = match.end()
    return tokens


class Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        assert token is not None, "unexpected end"
        if value is not None:
            assert token[1] == value, f"expected {value}, got {token}"
        self.i += 1
        return token

    def parse(self) -> object:
        tree = self.or_()
        assert self.peek() is None, f"trailing tokens {self.tokens[self.i :]}"
        return tree

    def chain(self, word: str, sub) -> object:
        items = [sub()]
        while self.peek() == ("word", word):
            self.take()
            items.append(sub())
        return items[0] if len(items) == 1 else (word, tuple(items))

    def or_(self) -> object:
        return self.chain("or", self.and_)

    def and_(self) -> object:
        return self.chain("and", self.not_)

    def not_(self) -> object:
        if self.peek() == ("word", "not"):
            self.take()
            return ("not", self.not_())
        return self.atom()

    def atom(self) -> object:
        token = self.take()
        if token == ("punct", "("):
            inner = self.or_()
            self.take(")")
            return inner
        kind, name = token
        assert kind == "word", token
        if name in ("contains", "startswith", "endswith"):
            self.take("(")
            path = self.take()
            assert path[0] == "word"
            self.take(",")
            arg = self.value(self.take())
            self.take(")")
            return ("fn", name, path[1], arg)
        op = self.take()
        assert op[0] == "word" and op[1] in ("eq", "ne", "gt", "ge", "lt", "le"), op
        return ("cmp", name, op[1], self.value(self.take()))

    @staticmethod
    def value(token: tuple[str, str]) -> object:
        kind, text = token
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if kind == "guid":
            return ("guid", text)
        if kind == "dt":
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        if kind == "num":
            return float(text) if any(c in text for c in ".e") else int(text)
        if kind == "word" and text in ("true", "false"):
            return text == "true"
        if kind == "word" and text == "null":
            return None
        raise AssertionError(f"not a value: {token}")


def parse(text: str) -> object:
    return Parser(text).parse()
