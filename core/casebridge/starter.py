"""The starting configuration ``casebridge init`` writes; ``config.example.toml`` is the same
settings with comments. Everything runs on embedded defaults: no account anywhere."""

from __future__ import annotations

from typing import Any


def starter_config() -> dict[str, Any]:
    return {
        "bridge": {
            "crm": "creatio",
            "channels": ["email", "sms"],
            "data_dir": "var",
            "public_url": "http://127.0.0.1:8080",
        },
        "store": {"path": "casebridge.db"},
        "http": {"host": "127.0.0.1", "port": 8080},
        "logging": {"level": "INFO", "json": False},
        "handoff": {"max_customer_turns": 3},
        "plugins": {
            "email": {
                "listen_host": "127.0.0.1",
                "listen_port": 2525,
                "support_addresses": ["support@example.com"],
                "catcher": {"port": 1025},
            },
            "sms": {"provider": "sandbox", "numbers": ["+15005550006"], "sandbox_port": 8082},
            "creatio": {"url": "sandbox", "sandbox_port": 8081},
        },
    }
