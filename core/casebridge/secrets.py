"""Secret values from the TOML: ``{env = "NAME"}``, ``{file = "path"}`` or a literal.

A :class:`Secret` never shows its value in ``repr``/``str``, so it cannot leak into logs or
error messages by accident; code that needs the value calls :meth:`Secret.reveal`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Secret:
    _value: str = field(repr=False)
    origin: str = "literal"

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return f"<secret from {self.origin}>"

    def __repr__(self) -> str:
        return f"Secret({self.origin})"

    def __bool__(self) -> bool:
        return bool(self._value)


def resolve_secret(spec: object, *, base_dir: Path) -> Secret:
    """Turn a TOML value into a Secret. Raises ValueError naming the source, never the value."""
    if isinstance(spec, str):
        return Secret(spec, "literal")
    if isinstance(spec, dict) and len(spec) == 1:
        ((kind, name),) = spec.items()
        if kind == "env" and isinstance(name, str):
            if name not in os.environ:
                raise ValueError(f"environment variable {name} is not set")
            return Secret(os.environ[name], f"env {name}")
        if kind == "file" and isinstance(name, str):
            path = base_dir / name
            try:
                return Secret(path.read_text().strip(), f"file {path}")
            except OSError as exc:
                raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    raise ValueError('expected a secret: {env = "NAME"}, {file = "path"} or a string')
