"""httpcore's connections on asyncio's transports (casebridge.http_streams), through
ShardedTransport, against real servers on loopback: keep-alive, a server closing an idle
connection, big answers, timeouts, refused connections and TLS."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.abc
import httpx
import pytest
from casebridge.http_pool import ShardedTransport
from casebridge.http_streams import _HIGH_WATER, AsyncioBackend
from support.certs import self_signed

pytestmark = pytest.mark.anyio

Serve = Callable[[anyio.abc.SocketStream], Awaitable[None]]


def answer(body: bytes, *, close: bool = False) -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (
        len(body), b"Connection: close\r\n" if close else b"") + body)


async def read_request(stream: anyio.abc.ByteStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    return data


async def serving(serve: Serve, tg: anyio.abc.TaskGroup) -> str:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    tg.start_soon(listener.serve, serve)
    return f"http://127.0.0.1:{listener.extra(anyio.abc.SocketAttribute.local_port)}"


def test_shards_use_the_asyncio_backend() -> None:
    transport = ShardedTransport(8)
    assert all(isinstance(s._pool._network_backend, AsyncioBackend)  # type: ignore[attr-defined]
               for s in transport._shards)


async def test_an_idle_connection_the_server_closed_is_replaced_without_an_error() -> None:
    connections: list[int] = []

    async def serve(stream: anyio.abc.SocketStream) -> None:
        connections.append(1)
        async with stream:
            await read_request(stream)
            await stream.send(answer(b"first"))
            # Then the server ends the kept-alive connection while it is idle.

    transport = ShardedTransport(1)
    async with anyio.create_task_group() as tg:
        url = await serving(serve, tg)
        async with httpx.AsyncClient(transport=transport) as client:
            assert (await client.get(url)).text == "first"
            await anyio.sleep(0.2)
            assert (await client.get(url)).text == "first"
        tg.cancel_scope.cancel()
    assert len(connections) == 2


async def test_a_big_answer_arrives_whole_and_the_connection_is_reused() -> None:
    body = bytes(range(256)) * 8192  # 2 MiB: past the read buffer's high-water mark
    connections: list[int] = []

    async def serve(stream: anyio.abc.SocketStream) -> None:
        connections.append(1)
        async with stream:
            for _ in range(2):
                await read_request(stream)
                await stream.send(answer(body))

    async with anyio.create_task_group() as tg:
        url = await serving(serve, tg)
        async with httpx.AsyncClient(transport=ShardedTransport(1)) as client:
            for _ in range(2):
                async with client.stream("GET", url) as response:
                    await anyio.sleep(0.2)  # the server gets well ahead of the reader...
                    # ...but what waits unread in the process stays bounded.
                    unread = response.extensions["network_stream"]._protocol.buffer
                    assert len(unread) <= 2 * _HIGH_WATER
                    assert await response.aread() == body
        tg.cancel_scope.cancel()
    assert len(connections) == 1


async def test_a_silent_server_times_out_and_a_closed_port_is_refused() -> None:
    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await read_request(stream)
            await anyio.sleep(30)

    async with anyio.create_task_group() as tg:
        url = await serving(serve, tg)
        async with httpx.AsyncClient(transport=ShardedTransport(2), timeout=0.3) as client:
            started = anyio.current_time()
            with pytest.raises(httpx.ReadTimeout):
                await client.get(url)
            assert anyio.current_time() - started < 3
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{port}/")
        tg.cancel_scope.cancel()


async def test_a_server_that_drops_the_connection_mid_answer_is_a_read_error() -> None:
    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await read_request(stream)
            await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")

    async with anyio.create_task_group() as tg:
        url = await serving(serve, tg)
        async with httpx.AsyncClient(transport=ShardedTransport(1)) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(url)
        tg.cancel_scope.cancel()


async def test_https_with_a_verified_certificate_and_a_refused_one(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def serve(stream: anyio.abc.SocketStream) -> None:
        try:
            async with await anyio.streams.tls.TLSStream.wrap(
                    stream, server_side=True, ssl_context=server_ctx) as tls:
                while True:
                    await read_request(tls)
                    await tls.send(answer(b"secret" * 200_000))
        except (anyio.EndOfStream, anyio.BrokenResourceError, ssl.SSLError, OSError):
            pass

    async with anyio.create_task_group() as tg:
        url = (await serving(serve, tg)).replace("http:", "https:")
        trusted = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(transport=ShardedTransport(1, verify=trusted)) as client:
            for _ in range(2):  # 1.2 MB each: reading pauses and resumes under TLS too
                async with client.stream("GET", url) as response:
                    await anyio.sleep(0.2)
                    assert await response.aread() == b"secret" * 200_000
            assert response.extensions["network_stream"].get_extra_info("ssl_object")
        async with httpx.AsyncClient(transport=ShardedTransport(1)) as client:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(url)
        tg.cancel_scope.cancel()
