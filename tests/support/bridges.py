"""Building a real Bridge (SQLite store, real plugin manager) on a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from casebridge.bridge import Bridge
from casebridge.model import RawInbound, SessionStatus

from .dists import install_dist

ROOT = Path(__file__).resolve().parents[2]
HOOK_TOKEN = "jsonl-hook-token"
API_TOKEN = "api-token"


def install_jsonl(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """Install the example plugin the way pip would: a distribution with an entry point."""
    install_dist(monkeypatch, root / "site", "casebridge-jsonl",
                 {"jsonl": "casebridge_jsonl:JsonlCrm"}, source=ROOT / "plugins" / "jsonl")


def write_config(root: Path, **sections: dict[str, Any]) -> Path:
    config: dict[str, Any] = {
        "bridge": {"crm": "jsonl", "channels": ["loop"], "data_dir": "data",
                   "public_url": "http://127.0.0.1:8080"},
        "http": {"api_token": API_TOKEN},
        "outbox": {"workers": 2, "poll_seconds": 0.05, "backoff_base": 0.01,
                   "backoff_cap": 0.05, "jitter": 0.0},
        "handoff": {"max_customer_turns": 0},
        "plugins": {"jsonl": {"path": "cases.jsonl", "webhook_token": HOOK_TOKEN}},
    }
    for name, values in sections.items():
        config.setdefault(name, {}).update(values)
    path = root / "casebridge.toml"
    path.write_text(tomli_w.dumps(config))
    return path


def inbound(body: str, *, sender: str = "ann@example.com", msg_id: str, to: str = "desk",
            name: str = "Ann Example", subject: str = "Printer",
            **extra: str) -> RawInbound:
    """A loop-channel inbound; ``extra`` fields such as ``attachment`` (its text) and
    ``attachment_name`` come with it."""
    return RawInbound(channel="loop", sender=sender, transport_id=msg_id,
                      fields={"from": sender, "to": to, "body": body, "id": msg_id,
                              "name": name, "subject": subject, **extra})


def jsonl_records(bridge: Bridge, kind: str) -> list[dict[str, Any]]:
    path = bridge.data_dir / "cases.jsonl"
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [r for r in records if r["type"] == kind]


async def settle(bridge: Bridge, rounds: int = 50) -> None:
    """Drain the outbox, including retries that come due shortly."""
    import anyio

    for _ in range(rounds):
        await bridge.outbox.drain(timeout=30)
        counts = await bridge.store.job_counts()
        if not counts.get("pending") and not counts.get("running"):
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"outbox did not settle: {await bridge.store.job_counts()}")


async def only_session(bridge: Bridge, status: SessionStatus | None = None):
    sessions = await bridge.store.list_sessions(status=status)
    assert len(sessions) == 1, sessions
    return sessions[0]
