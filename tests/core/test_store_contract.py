"""The store's contract as a whole: every backend implements each part and nothing beyond
it, the suite exercises every method of every part on every backend (one test module per
part, its tests taking the backend-parametrized ``store`` fixture), and the lifecycle."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest
from casebridge.pgstore import PgStore
from casebridge.store import (
    ConversationStore,
    JobQueue,
    PluginStateStore,
    Store,
    WriteLog,
)
from casebridge.store.migrations import MIGRATIONS
from casebridge.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent

# Each part of the contract and the module of the conformance suite that covers it.
PARTS: dict[type, str] = {
    ConversationStore: "test_store_conversations.py",
    WriteLog: "test_store_writes.py",
    PluginStateStore: "test_store_state.py",
    JobQueue: "test_store_jobs.py",
}
LIFECYCLE = {"open", "close", "ping", "schema_version"}
# Public methods a backend may have beyond the contract, and why.
EXTRAS: dict[type, set[str]] = {
    SqliteStore: {"path"},  # the file, for tools and tests
    PgStore: {"listen_jobs", "truncate_jobs"},  # NOTIFY wake-ups; benches
}


def methods(protocol: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(protocol, inspect.isfunction)
            if not name.startswith("_")}


def test_the_store_is_its_parts_and_the_lifecycle() -> None:
    union = set().union(*(methods(part) for part in PARTS))
    assert methods(Store) == union | LIFECYCLE
    # No method belongs to two parts: each caller's type says exactly what it may use.
    assert sum(len(methods(part)) for part in PARTS) == len(union)


@pytest.mark.parametrize("backend", [SqliteStore, PgStore])
def test_a_backend_implements_the_contract_and_nothing_else(backend: type) -> None:
    public = {name for name in dir(backend) if not name.startswith("_")}
    assert public - methods(Store) <= EXTRAS[backend]
    assert methods(Store) <= public
    store: Any = backend("/tmp/unused.db") if backend is SqliteStore else backend(
        "postgresql://u@127.0.0.1:1/unused")
    for part in (*PARTS, Store):
        assert isinstance(store, part)


def _called_on_store(module: Path) -> set[str]:
    """Methods called as ``store.<name>(...)`` inside tests that take the ``store`` fixture."""
    tree = ast.parse(module.read_text(encoding="utf-8"))
    called: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if not node.name.startswith("test") or "store" not in {a.arg for a in node.args.args}:
            continue
        for inner in ast.walk(node):
            if (isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Name)
                    and inner.value.id == "store"):
                called.add(inner.attr)
    return called


@pytest.mark.parametrize("part", list(PARTS), ids=lambda p: p.__name__)
def test_every_method_of_a_part_is_exercised_on_every_backend(part: type) -> None:
    called = _called_on_store(HERE / PARTS[part])
    missing = methods(part) - called
    assert not missing, f"{PARTS[part]} never calls {sorted(missing)} on the store fixture"


async def test_lifecycle(store: Store) -> None:
    await store.ping()
    assert await store.schema_version() == len(MIGRATIONS)
    await store.open()  # opening an open store changes nothing
    assert await store.schema_version() == len(MIGRATIONS)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_closed_store_says_so(backend: str, tmp_path: Path, request: Any) -> None:
    if backend == "sqlite":
        store: Store = SqliteStore(tmp_path / "x.db")
    else:
        store = PgStore(request.getfixturevalue("postgres_server").new_database())
    with pytest.raises(RuntimeError, match="not open"):
        await store.ping()
    await store.open()
    await store.close()
    await store.close()
    with pytest.raises(RuntimeError, match="not open"):
        await store.get_contact("c1")
