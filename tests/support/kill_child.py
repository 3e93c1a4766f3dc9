"""A runner for the kill -9 test: receives a batch of conversations (duplicates are dropped
by the store, so every restart may send them again) and works the outbox until it is empty.
The CRM is the example JSON-lines plugin, slowed down so a kill lands mid-write."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "plugins" / "jsonl")]

from casebridge import hookimpl  # noqa: E402
from casebridge.bridge import Bridge  # noqa: E402
from casebridge_jsonl import JsonlCrm  # noqa: E402

from support.bridges import inbound  # noqa: E402
from support.plugins import LoopChannel, ScriptedAssistant  # noqa: E402

CUSTOMERS = 30


class SlowJsonl(JsonlCrm):
    """Sleeps on both sides of each write: a kill may come after the CRM has the record but
    before the bridge has recorded it — the case the intent log exists for."""

    @hookimpl
    async def create_case(self, request):
        await anyio.sleep(0.03)
        case = await super().create_case(request)
        await anyio.sleep(0.03)
        return case

    @hookimpl
    async def append_activity(self, request):
        await anyio.sleep(0.02)
        ref = await super().append_activity(request)
        await anyio.sleep(0.02)
        return ref


def conversations():
    for n in range(CUSTOMERS):
        sender = f"customer{n}@example.com"
        yield inbound(f"hello from {n}", sender=sender, msg_id=f"{n}-1")
        yield inbound(f"I need a refund, {n}", sender=sender, msg_id=f"{n}-2")
        yield inbound(f"thanks, {n}", sender=sender, msg_id=f"{n}-3")


async def main(config: Path) -> None:
    bridge = Bridge.from_config(config, plugins={
        "loop": LoopChannel(), "assistant": ScriptedAssistant(), "jsonl": SlowJsonl()})
    await bridge.open()
    try:
        for raw in conversations():
            await bridge.receive(raw)
        print("READY", flush=True)
        while True:
            await bridge.outbox.drain(timeout=60)
            counts = await bridge.store.job_counts()
            if not counts.get("pending") and not counts.get("running"):
                break
            await anyio.sleep(0.05)
        print("DONE", flush=True)
    finally:
        await bridge.close()


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]))
