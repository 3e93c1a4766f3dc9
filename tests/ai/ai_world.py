"""What the AI tests share: the API key they use and the [plugins.ai] table they start from."""

from __future__ import annotations

from typing import Any

from scripted_server import ScriptedServer

API_KEY = "sk-test-0123456789abcdef"


def ai_table(server: ScriptedServer, **overrides: Any) -> dict[str, Any]:
    table: dict[str, Any] = {
        "base_url": server.url, "model": "test-model", "api_key": {"env": "CB_TEST_AI_KEY"},
        "timeout": 2.0, "retries": 2, "backoff_base": 0.01, "backoff_cap": 0.05,
    }
    table.update(overrides)
    return table
