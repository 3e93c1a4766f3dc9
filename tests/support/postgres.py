"""A throw-away PostgreSQL server for the tests and benches: initdb and pg_ctl in a temp
folder, listening on a loopback port the OS picked, with its socket in that folder.

As root (CI containers) the server runs as ``nobody``: PostgreSQL refuses to run as root,
and ``nobody`` exists on every Debian without adding users. Databases are cloned from a
template that already holds the casebridge schema, so a fresh database costs a file copy,
not a migration run.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "find_bin_dir"]

TEMPLATE = "casebridge_template"


def find_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian layout or PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One running server; :meth:`new_database` hands out fresh migrated databases."""

    def __init__(self, bin_dir: Path, folder: Path) -> None:
        self.bin_dir = bin_dir
        self.folder = folder
        self.data = folder / "data"
        self.port = _free_port()
        self._count = 0
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", "nobody", "--"]
            shutil.chown(folder, "nobody")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self._as_user, *args], capture_output=True, text=True,
                                check=False, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):"
                               f" {result.stdout}{result.stderr}")

    def start(self) -> None:
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C")
        # Durability off: these databases are thrown away, and fsync would dominate the run.
        options = (f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off"
                   " -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.folder / "postgres.log"), "-o", options, "-w", "-t", "60", "start")
        self._make_template()

    def stop(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                  "-w", "stop")

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def _make_template(self) -> None:
        from casebridge.pgstore.migrate import apply_migrations_sync

        self._admin(f"CREATE DATABASE {TEMPLATE}")
        apply_migrations_sync(self.url(TEMPLATE))

    def new_database(self, name: str = "") -> str:
        """A fresh database holding the migrated schema; returns its URL."""
        self._count += 1
        database = f"{name or 'test'}_{self._count}"
        self._admin(f'CREATE DATABASE "{database}" TEMPLATE {TEMPLATE}')
        return self.url(database)

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[PostgresServer]:
        """Start a server (RuntimeError when the binaries are missing) and stop it after."""
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (no initdb found)")
        folder = Path(tempfile.mkdtemp(prefix="casebridge-pg-"))
        server = cls(bin_dir, folder)
        try:
            server.start()
            yield server
        finally:
            try:
                if (server.data / "postmaster.pid").exists():
                    server.stop()
            finally:
                shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL for the whole test session (skipped only when it is not installed)."""
    if find_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb)")
    with PostgresServer.running() as server:
        yield server
