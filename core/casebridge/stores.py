"""Which :class:`~casebridge.store.Store` a configuration asks for: SQLite (the embedded
default) or PostgreSQL when ``[store] url`` is set."""

from __future__ import annotations

from .config import Config
from .store import Store
from .store.sqlite import SqliteStore

__all__ = ["open_store_for"]


def open_store_for(config: Config) -> Store:
    """A store for ``config``, not yet opened."""
    if config.store.url is not None:
        try:
            from .pgstore import PgStore
        except ImportError as exc:  # psycopg is an optional dependency
            raise RuntimeError(
                "[store] url names PostgreSQL, but psycopg is not installed:"
                " pip install 'casebridge[postgres]'"
            ) from exc
        return PgStore(config.store.url.reveal())
    return SqliteStore(config.data_dir / config.store.path)
