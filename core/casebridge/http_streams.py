"""httpcore's connections on asyncio's own transports, instead of through anyio's streams.

httpcore runs its connections through anyio on asyncio: each read and write enters a cancel
scope and a timeout scope, and, before every request, each idle connection of the pool is
asked whether its socket is readable, which anyio answers with a ``poll`` call after
building a dictionary of every attribute of the socket. Measured on loopback against a
server on another core (bench/handoff.py's 32 workers): about 400 us of CPU per request,
more than half of it there. Here a connection is an :class:`asyncio.Protocol` that buffers
what arrives: a read takes from the buffer or waits on one future (a timer for its
timeout), a write hands bytes to the transport, and "is the idle socket readable" is "did
anything arrive", with no system call.

:class:`AsyncioBackend` is an ``httpcore.AsyncNetworkBackend``; under another event loop
than asyncio's (trio) it hands over to httpcore's own backend.
"""

# httpcore's network interface takes timeouts as arguments:
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import sniffio

__all__ = ["AsyncioBackend", "AsyncioStream"]

# Past this many unread bytes the transport stops reading until a read takes some.
_HIGH_WATER = 256 * 1024

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class _Buffering(asyncio.Protocol):
    """Keeps what arrives until a read takes it; wakes the one reader or writer waiting."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.waiter: asyncio.Future[bool] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            self.reading_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self.writing_paused = False
        self._wake()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake()

    def _wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def wait(self, timeout: float | None) -> bool:
        """Wait for the next event (data, end, writable); False when ``timeout`` ran out."""
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        finally:
            if timer is not None:
                timer.cancel()
            if self.waiter is waiter:
                self.waiter = None


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection (TCP, Unix or TLS over either) as httpcore reads and writes it."""

    def __init__(self, transport: asyncio.Transport, protocol: _Buffering) -> None:
        self._transport = transport
        self._protocol = protocol

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        while not protocol.buffer:
            if protocol.eof:
                if protocol.error is not None:
                    raise httpcore.ReadError(str(protocol.error) or type(protocol.error).__name__)
                return b""
            if not await protocol.wait(timeout):
                raise httpcore.ReadTimeout("timed out reading")
        data = bytes(protocol.buffer[:max_bytes])
        del protocol.buffer[:max_bytes]
        if protocol.reading_paused and len(protocol.buffer) <= _HIGH_WATER // 2:
            protocol.reading_paused = False
            self._transport.resume_reading()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        protocol = self._protocol
        if (protocol.eof and protocol.error is not None) or self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        while protocol.writing_paused:
            if not await protocol.wait(timeout):
                raise httpcore.WriteTimeout("timed out writing")
        if protocol.error is not None:
            raise httpcore.WriteError(str(protocol.error) or type(protocol.error).__name__)

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._protocol, ssl_context,
                    server_hostname=server_hostname, ssl_handshake_timeout=timeout)
        except TimeoutError:
            self._transport.abort()
            raise httpcore.ConnectTimeout("timed out in the TLS handshake") from None
        except (OSError, ssl.SSLError) as exc:
            self._transport.abort()
            raise httpcore.ConnectError(str(exc)) from exc
        assert isinstance(transport, asyncio.Transport)
        # Reading is paused and resumed on the TLS layer from here on.
        self._protocol.transport = transport
        return AsyncioStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # An idle connection with something to read has been closed by the server.
            return bool(self._protocol.buffer) or self._protocol.eof
        names = {"ssl_object": "ssl_object", "client_addr": "sockname",
                 "server_addr": "peername", "socket": "socket"}
        return self._transport.get_extra_info(names[info]) if info in names else None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Opens :class:`AsyncioStream` connections (see the module's docstring)."""

    def __init__(self) -> None:
        self._other: httpcore.AsyncNetworkBackend | None = None

    def _fallback(self) -> httpcore.AsyncNetworkBackend | None:
        if sniffio.current_async_library() == "asyncio":
            return None
        if self._other is None:
            from httpcore._backends.auto import AutoBackend

            self._other = AutoBackend()
        return self._other

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,
        local_address: str | None = None, socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if (other := self._fallback()) is not None:
            return await other.connect_tcp(host, port, timeout, local_address, socket_options)
        loop = asyncio.get_running_loop()
        local = None if local_address is None else (local_address, 0)
        stream = await _connect(loop.create_connection(_Buffering, host, port,
                                                       local_addr=local), timeout)
        sock = stream.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for option in socket_options or ():
            sock.setsockopt(*option)
        return stream

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if (other := self._fallback()) is not None:
            return await other.connect_unix_socket(path, timeout, socket_options)
        loop = asyncio.get_running_loop()
        stream = await _connect(loop.create_unix_connection(_Buffering, path), timeout)
        for option in socket_options or ():
            stream.get_extra_info("socket").setsockopt(*option)
        return stream

    async def sleep(self, seconds: float) -> None:
        if (other := self._fallback()) is not None:
            await other.sleep(seconds)
            return
        await asyncio.sleep(seconds)


async def _connect(opening: Any, timeout: float | None) -> AsyncioStream:
    try:
        async with asyncio.timeout(timeout):
            transport, protocol = await opening
    except TimeoutError:
        raise httpcore.ConnectTimeout("timed out connecting") from None
    except OSError as exc:
        raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
    return AsyncioStream(transport, protocol)
