"""Naming a record by a unique prefix of its id, as git names commits.

Pure: the caller looks the candidates up (a few more than it shows, to know there are more)
and :func:`resolve_prefix` decides.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import CasebridgeError

__all__ = ["AmbiguousPrefix", "NoMatch", "resolve_prefix"]

SHOWN = 5


class NoMatch(CasebridgeError):
    """No record's id starts with the prefix."""


class AmbiguousPrefix(CasebridgeError):
    """Several records' ids start with the prefix; the message lists some of them."""

    def __init__(self, message: str, candidates: Sequence[str]) -> None:
        super().__init__(message)
        self.candidates = list(candidates)


def resolve_prefix(
    prefix: str, matches: Sequence[str], *, what: str = "session", more: bool = False
) -> str:
    """The one id in ``matches`` that ``prefix`` names.

    ``matches`` are ids starting with ``prefix`` (ids that do not are ignored); ``more`` says
    the lookup stopped before finding them all. An id equal to ``prefix`` wins outright.
    Raises :class:`NoMatch` or :class:`AmbiguousPrefix` with a message naming the prefix.
    """
    if not prefix.strip():
        raise NoMatch(f"give a {what} id or the start of one")
    found = sorted({m for m in matches if m.startswith(prefix)})
    if prefix in found:
        return prefix
    if not found:
        raise NoMatch(f"no {what} {prefix}")
    if len(found) == 1 and not more:
        return found[0]
    shown = ", ".join(found[:SHOWN])
    rest = " and more" if more or len(found) > SHOWN else ""
    raise AmbiguousPrefix(
        f"{what} prefix {prefix} is ambiguous: it matches {shown}{rest}; give more of the id",
        found,
    )
