"""A throwaway PostgreSQL cluster (Debian's ``postgresql`` binaries), for tests and benches."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tracer.devserver import free_port

__all__ = ["postgres_bindir", "temporary_postgres"]


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
