"""The business processes an integrator builds in Creatio, played by the sandbox: "Activity
added to a case" and "Case status changed" each post a thin JSON body to the configured
webhook, the way Creatio's *Call web service* element does.

Delivery runs in the background (never inside the request that caused it), one event at a
time in order, retrying a few times on a network error or a 5xx/429 answer.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from .settings import SandboxSettings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Delivery:
    """One event and what became of it; shown on ``GET /sandbox/admin/webhooks``."""

    event: dict[str, Any]
    attempts: int = 0
    status: int | None = None
    error: str | None = None
    delivered: bool = False


class ProcessRunner:
    """Queues events and posts them to the webhook. ``publish`` never blocks."""

    def __init__(self, settings: SandboxSettings) -> None:
        self.settings = settings
        self.history: deque[Delivery] = deque(maxlen=200)
        send, receive = anyio.create_memory_object_stream[Delivery](max_buffer_size=10_000)
        self._send: ObjectSendStream[Delivery] = send
        self._receive: ObjectReceiveStream[Delivery] = receive
        self.idle = anyio.Event()
        self.idle.set()
        self._in_flight = 0

    def publish(self, events: list[dict[str, Any]]) -> None:
        """Queue the events the enabled processes react to."""
        if not self.settings.webhook_url:
            return
        for event in events:
            if event["event_type"] not in self.settings.processes:
                continue
            delivery = Delivery(event)
            self.history.append(delivery)
            try:
                self._send.send_nowait(delivery)
            except anyio.WouldBlock:
                delivery.error = "queue full"
                continue
            self._in_flight += 1
            if self.idle.is_set():
                self.idle = anyio.Event()

    async def run(self) -> None:
        """Deliver queued events until cancelled."""
        async with httpx.AsyncClient(timeout=10.0) as client:
            async for delivery in self._receive:
                try:
                    await self._deliver(client, delivery)
                finally:
                    self._in_flight -= 1
                    if self._in_flight == 0:
                        self.idle.set()

    async def _deliver(self, client: httpx.AsyncClient, delivery: Delivery) -> None:
        url = self.settings.webhook_url
        if not url:
            return
        headers = {"Content-Type": "application/json"}
        if self.settings.webhook_secret:
            headers[self.settings.webhook_header] = self.settings.webhook_secret.reveal()
        for attempt in range(1, self.settings.webhook_attempts + 1):
            delivery.attempts = attempt
            try:
                response = await client.post(url, json=delivery.event, headers=headers)
            except httpx.HTTPError as exc:
                delivery.status, delivery.error = None, type(exc).__name__
            else:
                delivery.status = response.status_code
                if response.status_code < 300:
                    delivery.delivered, delivery.error = True, None
                    return
                delivery.error = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    break
            if attempt < self.settings.webhook_attempts:
                await anyio.sleep(self.settings.webhook_backoff_s * 2 ** (attempt - 1))
        log.warning("business process %s for case %s not delivered: %s",
                    delivery.event["event_type"], delivery.event.get("caseId"), delivery.error)

    async def wait_idle(self) -> None:
        """Return once every queued event has been delivered or given up on."""
        await self.idle.wait()

    def history_json(self) -> list[dict[str, Any]]:
        return [{"event": d.event, "attempts": d.attempts, "status": d.status,
                 "error": d.error, "delivered": d.delivered} for d in self.history]
