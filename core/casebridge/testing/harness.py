"""A real bridge for the conformance suites: built from a TOML on a temporary folder, its
plugins' services running in a task group, its web app reachable in-process."""

from __future__ import annotations

import hashlib
import itertools
import secrets
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import tomli_w

from ..bridge import Bridge
from ..hookspecs import hookimpl
from ..model import (
    AddressKind,
    Author,
    Delivery,
    DeliveryState,
    Direction,
    Inbound,
    Message,
    RawInbound,
    WebhookRequest,
    derived_id,
)


@dataclass
class Harness:
    """An opened bridge with its services running, and an HTTP client on its web app."""

    bridge: Bridge
    http: httpx.AsyncClient

    async def settle(self, rounds: int = 100) -> None:
        """Run the outbox until nothing is pending or running (retries that come due
        shortly included); fail after ``rounds`` tries."""
        for _ in range(rounds):
            await self.bridge.outbox.drain(timeout=30)
            counts = await self.bridge.store.job_counts()
            if not counts.get("pending") and not counts.get("running"):
                return
            await anyio.sleep(0.05)
        raise AssertionError(f"outbox did not settle: {await self.bridge.store.job_counts()}")

    async def post_webhook(self, crm: str, request: WebhookRequest) -> httpx.Response:
        """Post ``request`` to the bridge's CRM webhook route, as the CRM would."""
        return await self.http.post(f"/webhooks/{crm}/{request.path_token}",
                                    content=request.body, headers=dict(request.headers))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(root: Path, config: Mapping[str, Any]) -> Path:
    """The TOML for ``config``: HTTP on a free loopback port, quick outbox retries and a
    random API token unless ``config`` says otherwise."""
    port = free_port()
    merged: dict[str, Any] = {
        "bridge": {"data_dir": "data", "public_url": f"http://127.0.0.1:{port}"},
        "http": {"host": "127.0.0.1", "port": port, "api_token": secrets.token_urlsafe(16)},
        "outbox": {"workers": 2, "poll_seconds": 0.05, "backoff_base": 0.01,
                   "backoff_cap": 0.05, "jitter": 0.0},
        "handoff": {"max_customer_turns": 0},
    }
    for section, values in config.items():
        if isinstance(values, Mapping):
            merged.setdefault(section, {}).update(values)
        else:
            merged[section] = values
    root.mkdir(parents=True, exist_ok=True)
    path = root / "casebridge.toml"
    path.write_text(tomli_w.dumps(merged))
    return path


@asynccontextmanager
async def running_bridge(
    root: Path, config: Mapping[str, Any], plugins: Mapping[str, object] | None = None
) -> AsyncIterator[Harness]:
    """A bridge built from ``config`` in ``root``: its plugins' services and its web app
    (on a loopback port) run until exit.

    The outbox does not run by itself: :meth:`Harness.settle` runs it, so a suite decides
    when work happens.
    """
    from ..web import create_app, serve

    bridge = Bridge.from_config(write_config(root, config), plugins=plugins)
    http_config = bridge.config.http
    await bridge.open()
    try:
        async with anyio.create_task_group() as tg:
            await bridge.start_services(tg)
            await tg.start(serve, create_app(bridge), http_config.host, http_config.port)
            base = f"http://{http_config.host}:{http_config.port}"
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                yield Harness(bridge, http)
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await bridge.close()


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:  # noqa: ASYNC109
    """Return once ``predicate()`` holds; fail after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        for _ in itertools.count():
            if predicate():
                return
            await anyio.sleep(0.02)


class LoopChannel:
    """A channel whose transport is a Python list, for the CRM suite: ``inbound`` builds
    what it receives, ``sent`` holds what it delivered."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    @staticmethod
    def inbound(sender: str, text: str, external_id: str, *, name: str = "",
                subject: str = "") -> RawInbound:
        return RawInbound(channel="loop", sender=sender, transport_id=external_id, fields={
            "from": sender, "body": text, "id": external_id, "name": name, "subject": subject})

    @hookimpl
    async def ingest(self, raw: RawInbound) -> Inbound:
        fields = raw.fields
        message = Message(
            id=derived_id("loop", fields["id"]), channel=raw.channel,
            direction=Direction.INBOUND, author=Author.CUSTOMER, external_id=fields["id"],
            sender=fields["from"], recipients=("desk",), text=fields["body"],
            original_text=fields["body"], subject=fields.get("subject", ""),
        )
        return Inbound(message, contact_name=fields.get("name", ""),
                       sender_kind=AddressKind.EMAIL)

    @hookimpl
    async def deliver_reply(self, message: Message) -> Delivery:
        if all(m.id != message.id for m in self.sent):
            self.sent.append(message)
        digest = hashlib.sha256(message.id.encode()).hexdigest()[:16]
        return Delivery(DeliveryState.SENT, external_id=f"loop-{digest}")
