"""What every store backend does the same way: open, close, ping and report its schema
version through its one ``db`` (the file or the pool), and work as an async context manager."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self

__all__ = ["OnDatabase"]


class _Database(Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def schema_version(self) -> int: ...


class OnDatabase:
    """A store whose parts share one ``db``; its lifecycle is the database's."""

    db: _Database

    def __repr__(self) -> str:
        return repr(self.db)

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def ping(self) -> None:
        await self.db.ping()

    async def schema_version(self) -> int:
        """The highest migration applied."""
        return await self.db.schema_version()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
