"""Plugin state (:class:`~casebridge.store.PluginStateStore`) on every backend: JSON values
per plugin and key, and an atomic compare-and-put."""

from __future__ import annotations

import pytest
from casebridge.store import PluginStateStore

pytestmark = pytest.mark.anyio


async def test_plugin_state(store: PluginStateStore) -> None:
    value = {"opted_out": ["+15550001111"], "since": "2026-01-01", "n": 3, "ok": True}
    assert await store.get_state("sms", "optout") is None
    await store.put_state("sms", "optout", value)
    assert await store.get_state("sms", "optout") == value
    assert await store.get_state("email", "optout") is None
    await store.put_state("sms", "optout", [1, 2])
    assert await store.get_state("sms", "optout") == [1, 2]
    await store.delete_state("sms", "optout")
    assert await store.get_state("sms", "optout") is None
    with pytest.raises(ValueError, match="sms/bad"):
        await store.put_state("sms", "bad", {"x": object()})


async def test_compare_and_put_state(store: PluginStateStore) -> None:
    assert await store.compare_and_put_state("sms", "k", None, {"v": 1, "w": 2})
    assert not await store.compare_and_put_state("sms", "k", None, {"v": 9})
    assert not await store.compare_and_put_state("sms", "k", {"v": 2}, {"v": 9})
    assert await store.compare_and_put_state("sms", "k", {"w": 2, "v": 1}, {"v": 3})
    assert await store.get_state("sms", "k") == {"v": 3}
    assert await store.compare_and_put_state("sms", "k", {"v": 3}, None)
    assert await store.get_state("sms", "k") is None
