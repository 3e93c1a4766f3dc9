"""The TOML configuration: the core's own sections and the schema-checked plugin sections.

Every section is a frozen dataclass. :func:`build` turns a TOML table into one, strictly:
unknown keys, wrong types and missing required keys fail with the file, the key and what
was expected. Plugins declare their section's dataclass through the ``config_section`` hook
and receive the built instance in ``configure``.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError
from .secrets import Secret, resolve_secret


@dataclass(frozen=True, slots=True)
class BridgeSection:
    """``[bridge]``: which plugins act and where the bridge keeps its files."""

    crm: str = "creatio"
    channels: list[str] = field(default_factory=lambda: ["email", "sms"])
    plugins: list[str] = field(default_factory=list)
    disable_defaults: bool = False
    strict: bool = False
    data_dir: str = "var"
    public_url: str = "http://127.0.0.1:8080"
    link_secret: Secret | None = None
    link_ttl_days: int = 30
    session_idle_hours: float = 72.0
    # Off by default: the first message of a new session gets an acknowledgement
    # (template acknowledge/<channel>.txt.j2, else acknowledge/default.txt.j2).
    acknowledge: bool = False
    # Worker processes for CPU-bound parsing (casebridge.processes): unset, one per usable
    # core beyond the first (at most 4); 0 parses in threads, on the event loop's core.
    parse_processes: int | None = None

    def __post_init__(self) -> None:
        if self.parse_processes is not None and self.parse_processes < 0:
            raise ValueError("parse_processes must be 0 or more")
        if self.link_ttl_days < 1:
            raise ValueError("link_ttl_days must be at least 1")
        if self.session_idle_hours <= 0:
            raise ValueError("session_idle_hours must be positive")
        if self.link_secret is not None and len(self.link_secret.reveal().encode()) < 16:
            raise ValueError("link_secret must be at least 16 bytes long")


@dataclass(frozen=True, slots=True)
class StoreSection:
    """``[store]``: the SQLite file (relative to ``data_dir``), or ``url``, a
    ``postgresql://`` URL (a secret: it may hold the password), for PostgreSQL instead."""

    path: str = "casebridge.db"
    url: Secret | None = None

    def __post_init__(self) -> None:
        if self.url is not None and not self.url.reveal().startswith(
            ("postgresql://", "postgres://")
        ):
            # Never echo the value: it may hold a password.
            raise ValueError("url must be a postgresql:// URL")


@dataclass(frozen=True, slots=True)
class HttpSection:
    host: str = "127.0.0.1"
    port: int = 8080
    api_token: Secret | None = None
    max_body_bytes: int = 1_000_000


@dataclass(frozen=True, slots=True)
class OutboxSection:
    workers: int = 4
    max_attempts: int = 10
    backoff_base: float = 1.0
    backoff_factor: float = 2.0
    backoff_cap: float = 600.0
    jitter: float = 0.5
    lease_seconds: float = 120.0
    poll_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.workers < 1 or self.max_attempts < 1:
            raise ValueError("workers and max_attempts must be at least 1")


DEFAULT_PHRASES = [
    # English, German, French, Spanish, Italian, Portuguese, Dutch
    "speak to a person", "talk to a person", "speak to a human", "talk to a human",
    "real person", "human", "agent", "representative",
    "mit einem menschen", "mitarbeiter", "echten menschen",
    "parler à un humain", "parler à une personne", "conseiller", "un humain",
    "hablar con una persona", "hablar con un humano", "agente",
    "parlare con una persona", "operatore",
    "falar com uma pessoa", "atendente",
    "met een medewerker", "een mens",
]


@dataclass(frozen=True, slots=True)
class HandoffSection:
    """``[handoff]``: the default policy: phrases that ask for a person, and a turn limit."""

    phrases: list[str] = field(default_factory=lambda: list(DEFAULT_PHRASES))
    max_customer_turns: int = 3


@dataclass(frozen=True, slots=True)
class FieldRule:
    """One default ``map_fields`` rule: set ``column`` to ``value`` when every condition holds.

    Conditions: ``channel`` equals the session's channel; any of ``keywords`` occurs in the
    customer's words (case-insensitive); ``regex`` matches them. No condition: always.
    """

    column: str
    value: str
    kind: Literal["text", "lookup"] = "text"
    channel: str = ""
    keywords: list[str] = field(default_factory=list)
    regex: str = ""


@dataclass(frozen=True, slots=True)
class FieldsSection:
    """``[fields]``: default rules, and which plugin wins a column two plugins fill."""

    rules: list[FieldRule] = field(default_factory=list)
    prefer: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TemplatesSection:
    dir: str = ""


@dataclass(frozen=True, slots=True)
class LoggingSection:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json: bool = False


CORE_SECTIONS: dict[str, type] = {
    "bridge": BridgeSection,
    "store": StoreSection,
    "http": HttpSection,
    "outbox": OutboxSection,
    "handoff": HandoffSection,
    "fields": FieldsSection,
    "templates": TemplatesSection,
    "logging": LoggingSection,
}


@dataclass(frozen=True, slots=True)
class Config:
    """A loaded configuration: the core sections built, plugin sections still raw tables
    (they are built once the plugins have declared their schemas)."""

    path: Path
    bridge: BridgeSection
    store: StoreSection
    http: HttpSection
    outbox: OutboxSection
    handoff: HandoffSection
    fields: FieldsSection
    templates: TemplatesSection
    logging: LoggingSection
    plugin_tables: Mapping[str, Mapping[str, Any]]

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def data_dir(self) -> Path:
        return (self.base_dir / self.bridge.data_dir).resolve()

    @property
    def enabled(self) -> list[str]:
        """Plugins the TOML enables, in a stable order; ``defaults`` unless disabled."""
        names = [self.bridge.crm, *self.bridge.channels, *self.bridge.plugins]
        if not self.bridge.disable_defaults:
            names.append("defaults")
        return list(dict.fromkeys(names))


def load(path: Path) -> Config:
    """Read and check the core sections of ``path``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file (create one with 'casebridge init')") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(CORE_SECTIONS) - {"plugins"})
    if unknown:
        raise ConfigError(
            f"{path}: unknown section [{unknown[0]}] (expected one of "
            f"{', '.join(sorted([*CORE_SECTIONS, 'plugins']))})"
        )
    built = {
        name: build(schema, _table(data.get(name, {}), path, name), path=path, where=name)
        for name, schema in CORE_SECTIONS.items()
    }
    plugin_tables = _table(data.get("plugins", {}), path, "plugins")
    for name, table in plugin_tables.items():
        _table(table, path, f"plugins.{name}")
    return Config(path=path, plugin_tables=plugin_tables, **built)


def _table(value: object, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{where}] must be a table, got {_kind(value)}")
    return value


def build(schema: type, table: Mapping[str, Any], *, path: Path, where: str) -> Any:
    """Build the dataclass ``schema`` from a TOML table, or raise ConfigError saying what
    is wrong and where."""
    return _Builder(path).dataclass(schema, table, where)


class _Builder:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {_describe(where)}: {message}")

    def dataclass(self, schema: type, table: Mapping[str, Any], where: str) -> Any:
        hints = typing.get_type_hints(schema)
        fields = {f.name: f for f in dataclasses.fields(schema)}
        for key in table:
            if key not in fields:
                raise self.fail(
                    f"{where}.{key}",
                    f"unknown key (expected one of {', '.join(sorted(fields)) or 'no keys'})",
                )
        values = {}
        for name, fld in fields.items():
            if name in table:
                values[name] = self.value(hints[name], table[name], f"{where}.{name}")
            elif (
                fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING
            ):
                raise self.fail(f"{where}.{name}", f"missing required key ({_expect(hints[name])})")
        try:
            return schema(**values)
        except (ValueError, TypeError) as exc:
            raise self.fail(where, str(exc)) from None

    def value(self, hint: Any, value: Any, where: str) -> Any:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if hint is Secret:
            try:
                return resolve_secret(value, base_dir=self.path.parent)
            except ValueError as exc:
                # Never echo the value: it may be the secret itself.
                raise self.fail(where, str(exc)) from None
        if origin in (types.UnionType, typing.Union):
            options = [a for a in args if a is not type(None)]
            if len(options) == 1:
                return self.value(options[0], value, where)
            for option in options:
                try:
                    return self.value(option, value, where)
                except ConfigError:
                    continue
            raise self.fail(where, f"expected {_expect(hint)}, got {_kind(value)}")
        if origin is Literal:
            if value not in args:
                choices = ", ".join(repr(a) for a in args)
                raise self.fail(where, f"expected one of {choices}, got {value!r}")
            return value
        if origin in (list, tuple):
            if not isinstance(value, list):
                raise self.fail(where, f"expected {_expect(hint)}, got {_kind(value)}")
            items = [self.value(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
            return items if origin is list else tuple(items)
        if origin is dict:
            if not isinstance(value, dict):
                raise self.fail(where, f"expected {_expect(hint)}, got {_kind(value)}")
            return {
                self.value(args[0], k, f"{where}.{k}"): self.value(args[1], v, f"{where}.{k}")
                for k, v in value.items()
            }
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise self.fail(where, f"expected a table, got {_kind(value)}")
            return self.dataclass(hint, value, where)  # type: ignore[arg-type]
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if hint in (str, int, float, bool):
            if type(value) is not hint:
                raise self.fail(where, f"expected {_expect(hint)}, got {_kind(value)}")
            return value
        if hint is Any:
            return value
        raise self.fail(where, f"unsupported type {hint!r} in the schema (a plugin bug)")


def _describe(where: str) -> str:
    section, _, key = where.partition(".")
    if section == "plugins" and key:
        name, _, key = key.partition(".")
        section = f"plugins.{name}"
    return f"[{section}] {key}" if key else f"[{section}]"


def _expect(hint: Any) -> str:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Secret:
        return 'a secret ({env = "NAME"}, {file = "path"} or a string)'
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_expect(a) for a in args if a is not type(None))
    if origin in (list, tuple):
        return f"a list of {_expect(args[0])}"
    if origin is dict:
        return f"a table of {_expect(args[1])}"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if dataclasses.is_dataclass(hint):
        return "a table"
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _kind(value: object) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
             list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)
