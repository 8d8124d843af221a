"""A throwaway PostgreSQL cluster (Debian's ``postgresql`` binaries), for tests and benches."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tracer.devserver import free_port

__all__ = ["PostgresCluster", "postgres_bindir", "postgres_cluster", "temporary_postgres"]


def postgres_bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` live, or ``None`` when PostgreSQL is not installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@contextlib.contextmanager
def temporary_postgres(bindir: Path) -> Iterator[str]:
    """Run a new cluster on a free port; yield the URL of its ``postgres`` database."""
    # Not under pytest's temporary directory: that one is private to the current user.
    base = Path(tempfile.mkdtemp(prefix="temporal-tracer-pg-"))
    # PostgreSQL refuses to run as root: run it as the postgres system user then.
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
    data, log = base / "data", base / "server.log"
    initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "tracer", "--auth=trust", "-E", "UTF8"]
    subprocess.run([*as_user, *initdb], check=True, capture_output=True)
    port = free_port()
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        [*as_user, *pg_ctl, "-o", options, "-l", str(log), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://tracer@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, *pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class PostgresCluster:
    """A throwaway cluster that a test can stop and start again (same port, same data)."""

    bindir: Path
    base: Path
    port: int
    as_user: list[str]

    @property
    def url(self) -> str:
        """SQLAlchemy URL of its ``postgres`` database."""
        return f"postgresql+psycopg://tracer@127.0.0.1:{self.port}/postgres"

    def _pg_ctl(self, *args: str) -> None:
        pg_ctl = [str(self.bindir / "pg_ctl"), "-D", str(self.base / "data")]
        subprocess.run([*self.as_user, *pg_ctl, *args], check=True, capture_output=True)

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("-o", options, "-l", str(self.base / "server.log"), "-w", "start")

    def stop(self) -> None:
        """Stop the server (fast shutdown: connections are cut)."""
        self._pg_ctl("-m", "fast", "-w", "stop")


@contextlib.contextmanager
def postgres_cluster(bindir: Path) -> Iterator[PostgresCluster]:
    """A new, started cluster on a free port; removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="temporal-tracer-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres")
    initdb = [str(bindir / "initdb"), "-D", str(base / "data"), "-U", "tracer", "--auth=trust"]
    subprocess.run([*as_user, *initdb, "-E", "UTF8"], check=True, capture_output=True)
    cluster = PostgresCluster(bindir, base, free_port(), as_user)
    cluster.start()
    try:
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            cluster._pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)
