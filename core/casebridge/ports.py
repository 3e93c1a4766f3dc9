"""Which setting to change when a port the runner listens on is taken.

A listener that cannot bind fails deep inside the runner's task groups; the command line
turns that into one line naming the port and the TOML key that sets it. The keys are found
generically: ``[http] port`` and every top-level ``*port`` key of a plugin's settings (such
as ``[plugins.email] listen_port``), so a plugin's own listeners are named too.
"""

from __future__ import annotations

import dataclasses
import errno
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ListenSetting", "address_in_use", "busy", "listen_settings", "port_in_use_message"]


@dataclass(frozen=True, slots=True)
class ListenSetting:
    """One configured listening address and the key that sets its port."""

    key: str
    host: str
    port: int


def listen_settings(
    http_host: str, http_port: int, plugin_settings: Mapping[str, Any]
) -> list[ListenSetting]:
    """``[http] port`` and each plugin's top-level ``*port`` setting with a fixed port."""
    found = [ListenSetting("[http] port", http_host, http_port)]
    for name, settings in sorted(plugin_settings.items()):
        if settings is None or not dataclasses.is_dataclass(settings):
            continue
        values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
        # The host beside a port ("listen_host" with "listen_port"), else loopback.
        for key, value in values.items():
            if not key.endswith("port") or type(value) is not int or value <= 0:
                continue
            host = values.get(key.removesuffix("port") + "host")
            found.append(
                ListenSetting(
                    f"[plugins.{name}] {key}",
                    host if isinstance(host, str) and host else "127.0.0.1",
                    value,
                )
            )
    return found


def address_in_use(error: BaseException) -> OSError | None:
    """The "address already in use" error inside ``error`` (or its groups), if any."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := address_in_use(inner)) is not None:
                return found
        return None
    if isinstance(error, OSError) and (
        error.errno == errno.EADDRINUSE or "already in use" in str(error).lower()
    ):
        return error
    return None


def busy(host: str, port: int) -> bool:
    """True when nobody may listen on ``host:port`` now (bound the way the runner binds)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def port_in_use_message(taken: Iterable[ListenSetting], config_path: str, detail: str) -> str:
    """One line: which port is taken and the key to change; ``detail`` when none is known."""
    taken = list(taken)
    if not taken:
        return f"cannot start: {detail}"
    where = "; ".join(f"port {s.port} on {s.host} is in use: change {s.key}" for s in taken)
    return f"cannot start: {where} in {config_path} (or stop what listens there)"
