"""The shapes of what a plugin contributes besides hook results: its config section, its
long-running services, its CLI subcommands and the addresses people open."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from anyio.abc import TaskStatus


@dataclass(frozen=True, slots=True)
class ConfigSection:
    """A plugin's section of the TOML, ``[plugins.<name>]``.

    ``schema`` is a dataclass: the core builds it from the section, failing on unknown keys,
    wrong types and missing required keys; ``__post_init__`` may raise ``ValueError`` for
    checks that span keys, and the core reports it with the file and section.
    """

    name: str
    schema: type


@dataclass(frozen=True, slots=True)
class Service:
    """A long-running task the runner starts in its task group.

    ``run`` calls ``task_status.started()`` once it is ready (a port bound, a poller
    scheduled): the runner starts the next service, and reports ready, only after that.

    ``singleton`` services run on exactly one runner of those sharing a store (a poller
    that must not run N times): the runner starts them only while it holds their lock, and
    another runner takes over when the holder dies (:mod:`casebridge.singletons`). Their
    ``task_status`` is not waited for, and ``name`` is the lock's name: keep it stable.
    """

    name: str
    run: Callable[[TaskStatus[Any]], Awaitable[None]]
    singleton: bool = False


@dataclass(frozen=True, slots=True)
class Command:
    """A CLI subcommand. ``path`` is the words after ``casebridge`` (``("sandbox", "sms")``);
    ``configure`` adds arguments; ``run`` returns the exit status, or an awaitable of it."""

    path: tuple[str, ...]
    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Address:
    """Somewhere a person goes: a page, an SMTP server. ``label`` names it ("Creatio
    sandbox"), ``where`` is the URL or host:port, ``note`` what to know (a demo login). Never
    put a real secret in ``note``: the block is printed at start-up."""

    label: str
    where: str
    note: str = ""
