"""JSON from outside the bridge (webhook bodies, API calls, remote services' answers), read
with bounds, for the core and plugins alike.

``json.loads`` recurses once per nesting level: ``[`` repeated 100,000 times raises
``RecursionError``, which a handler catching ``ValueError`` lets through as a 500 with a
traceback. :func:`loads` turns that, bad syntax, bad encoding, a document nested deeper than
``max_depth`` and one over ``max_bytes`` into :class:`JsonInputError`, a ``ValueError`` whose
message says what was wrong (and never quotes the document).
"""

from __future__ import annotations

import json
from typing import Any

from .errors import CasebridgeError

__all__ = ["MAX_DEPTH", "JsonInputError", "loads", "nesting_depth"]

# Deeper than any document the bridge reads (OData and $batch answers nest about six levels).
MAX_DEPTH = 64


class JsonInputError(CasebridgeError, ValueError):
    """JSON that cannot be read: not JSON, nested too deeply or too large."""


def loads(
    data: bytes | bytearray | str,
    *,
    what: str = "the body",
    max_depth: int = MAX_DEPTH,
    max_bytes: int | None = None,
) -> Any:
    """The value ``data`` holds, or :class:`JsonInputError` naming ``what`` and the problem."""
    if max_bytes is not None and len(data) > max_bytes:
        raise JsonInputError(f"{what} is {len(data)} bytes, over the {max_bytes}-byte limit")
    try:
        value = json.loads(data)
    except RecursionError:
        raise JsonInputError(f"{what} is JSON nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise JsonInputError(f"{what} is not JSON ({exc.msg} at character {exc.pos})") from None
    except UnicodeDecodeError:
        raise JsonInputError(f"{what} is not JSON (not UTF-8, -16 or -32 text)") from None
    if nesting_depth(value, limit=max_depth) > max_depth:
        raise JsonInputError(f"{what} is JSON nested deeper than {max_depth} levels")
    return value


def nesting_depth(value: Any, *, limit: int | None = None) -> int:
    """How deeply arrays and objects nest in ``value`` (a scalar is 0, ``[]`` is 1); the walk
    is iterative and stops once past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if limit is not None and deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest
