"""HTTP connections kept alive as several small pools instead of one large one.

httpcore's pool re-examines every connection it holds each time a request starts or ends: a
socket check (``has_expired``, a ``getpeername`` and a ``poll``) per idle connection and, for
each idle one, a count over all of them. With 32 connections that is about a thousand calls
per request, measured at a third of the bridge's CPU per handoff (bench/handoff.py). Shards of
a few connections each keep that work small; a request goes to the shard with the fewest
requests in flight, so with at most ``max_connections`` requests in flight (the callers'
concurrency cap) a request never waits for a connection while another shard has one free.
Connections run on asyncio's own transports (:mod:`.http_streams`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from .http_streams import AsyncioBackend

PER_SHARD = 4
# Idle connections are closed before 5 s, the keep-alive timeout of common servers
# (uvicorn's default, so the sandbox's): a request then never races the server closing the
# connection it is being sent on (seen as a ReadError and a retry in bench/handoff.py).
KEEPALIVE_EXPIRY = 4.0


class ShardedTransport(httpx.AsyncBaseTransport):
    """At most ``max_connections`` keep-alive connections, in pools of ``per_shard``.
    ``transport_options`` go to each :class:`httpx.AsyncHTTPTransport` (``verify``,
    ``retries``...)."""

    def __init__(self, max_connections: int, *, per_shard: int = PER_SHARD,
                 **transport_options: Any) -> None:
        if max_connections < 1 or per_shard < 1:
            raise ValueError("max_connections and per_shard must be at least 1")
        count = -(-max_connections // per_shard)
        size, extra = divmod(max_connections, count)
        self.sizes = [size + (1 if i < extra else 0) for i in range(count)]
        self._shards = [
            httpx.AsyncHTTPTransport(
                limits=httpx.Limits(max_connections=n, max_keepalive_connections=n,
                                    keepalive_expiry=KEEPALIVE_EXPIRY),
                **transport_options)
            for n in self.sizes
        ]
        backend = AsyncioBackend()
        for shard in self._shards:
            # httpx takes no network backend: its pool's is replaced before any connection
            # is made (see http_streams: anyio's streams cost a third of a request's CPU).
            pool = getattr(shard, "_pool", None)
            if pool is not None and hasattr(pool, "_network_backend"):
                pool._network_backend = backend
        self.in_flight = [0] * count

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # The least busy shard relative to its size (shards differ by at most one).
        index = min(range(len(self._shards)),
                    key=lambda i: self.in_flight[i] - self.sizes[i])
        self.in_flight[index] += 1
        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            self.in_flight[index] -= 1
            raise
        # The connection stays taken until the body is read and closed.
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _Releasing(response.stream, self, index)
        return response

    def _release(self, index: int) -> None:
        self.in_flight[index] -= 1

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class _Releasing(httpx.AsyncByteStream):
    """A response body that gives its shard's slot back once, when closed."""

    def __init__(self, stream: httpx.AsyncByteStream, owner: ShardedTransport,
                 index: int) -> None:
        self._stream = stream
        self._owner: ShardedTransport | None = owner
        self._index = index

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        owner, self._owner = self._owner, None
        try:
            await self._stream.aclose()
        finally:
            if owner is not None:
                owner._release(self._index)
