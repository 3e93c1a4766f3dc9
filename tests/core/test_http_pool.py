"""ShardedTransport against a real HTTP server on loopback: as many requests at once as it
has connections, each connection kept alive and reused, every slot given back."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import anyio
import httpx
import pytest
from casebridge.http_pool import ShardedTransport


class Server:
    """A tiny HTTP/1.1 keep-alive server: each request waits 0.2 s, then answers with the
    client port of its connection."""

    def __init__(self) -> None:
        self.ports: set[int] = set()
        self.url = ""
        self._handlers: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        port = writer.get_extra_info("peername")[1]
        self.ports.add(port)
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break  # the client closed the connection
            await asyncio.sleep(0.2)
            body = str(port).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode()
                         + b"\r\n\r\n" + body)
            await writer.drain()
        writer.close()
        self._handlers.discard(task)

    async def _stop(self) -> None:
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    def __enter__(self) -> Server:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as served:
        yield served


async def test_requests_up_to_the_limit_run_at_once_on_kept_alive_connections(
        server: Server) -> None:
    transport = ShardedTransport(10, per_shard=4)
    assert transport.sizes == [4, 3, 3]
    async with httpx.AsyncClient(transport=transport, base_url=server.url) as client:
        for _ in range(3):
            started = anyio.current_time()
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(client.get, "/")
            # Ten at once: one round of 0.2 s, not three of a pool of four.
            assert anyio.current_time() - started < 0.55
            assert transport.in_flight == [0, 0, 0]
    # The same ten connections served all thirty requests.
    assert len(server.ports) == 10


async def test_a_streamed_response_holds_its_slot_until_closed(server: Server) -> None:
    transport = ShardedTransport(2, per_shard=1)
    async with httpx.AsyncClient(transport=transport, base_url=server.url) as client:
        async with client.stream("GET", "/") as response:
            assert transport.in_flight == [1, 0]
            # The next request goes to the free shard.
            await client.get("/")
            await response.aread()
        assert transport.in_flight == [0, 0]


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ShardedTransport(0)
