"""What an operator sees when ``--db`` is wrong or a port is busy: the real command, one
line naming the problem and the fix, no traceback (unless ``--log-level DEBUG``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tracer.devserver import free_port

CLI = [sys.executable, "-m", "tracer"]


def run(*args: str, cwd: Path | None = None, prelude: str = "") -> subprocess.CompletedProcess[str]:
    """``temporal-tracer ARGS`` in a new process (``prelude``: Python run before it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    command = [*CLI, *args]
    if prelude:
        code = f"{prelude}\nimport sys\nfrom tracer.cli import main\nsys.exit(main(sys.argv[1:]))"
        command = [sys.executable, "-c", code, *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env=env, cwd=cwd, check=False
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1, result.stderr  # before: 43 to 140 lines of traceback
    return lines[0]


def _closed_port() -> int:
    return free_port()


@pytest.mark.parametrize("command", [["db", "upgrade"], ["serve", "--namespace", "orders"]])
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgres://tracer:s3cret@127.0.0.1:5432/tracer", "use postgresql+psycopg://"),
        ("postgresql://tracer:s3cret@127.0.0.1:5432/tracer", "use postgresql+psycopg://"),
        ("postgresql+psycopg2://tracer@127.0.0.1/tracer", "use postgresql+psycopg://"),
        ("mysql://tracer:s3cret@127.0.0.1/tracer", "SQLite or PostgreSQL"),
        ("not a url", "not a database URL: use sqlite:///"),
    ],
)
def test_wrong_scheme_says_which_one_to_use(command: list[str], url: str, says: str) -> None:
    flags = ["--port", str(free_port()), "--otlp-port", str(free_port()), "--otlp-grpc-port", "0"]
    line = one_line(run(*command, "--db", url, *(flags if command[0] == "serve" else [])))
    assert line.startswith("temporal-tracer: --db ")
    assert says in line
    assert "s3cret" not in line  # the password stays out of logs


def test_missing_driver_names_the_extra() -> None:
    # As in an install without the postgres extra: psycopg cannot be imported.
    result = run(
        "db",
        "upgrade",
        "--db",
        "postgresql+psycopg://tracer@127.0.0.1/tracer",
        prelude="import sys; sys.modules['psycopg'] = None",
    )
    line = one_line(result)
    assert "pip install 'temporal-tracer[postgres]'" in line
    assert "MySQLdb" not in line and "No module named" not in line


def test_refused_postgresql_connection_says_where() -> None:
    port = _closed_port()
    line = one_line(run("db", "upgrade", "--db", f"postgresql+psycopg://tracer@127.0.0.1:{port}/x"))
    assert line.endswith(
        f"cannot reach PostgreSQL at 127.0.0.1:{port}: is it running and reachable from here?"
    )


def test_sqlite_file_in_a_missing_folder_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent" / "dir"
    line = one_line(run("db", "upgrade", "--db", f"sqlite:///{missing / 'x.db'}"))
    assert f"the folder {missing} does not exist: create it" in line
    assert not missing.exists() and not missing.parent.exists()


def test_sqlite_default_location_still_works(tmp_path: Path) -> None:
    result = run("db", "upgrade", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "temporal-tracer.db").exists()


def test_unwritable_sqlite_file_says_so(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes read-only files")
    database = tmp_path / "x.db"
    database.write_bytes(b"")
    database.chmod(0o444)
    line = one_line(run("db", "upgrade", "--db", f"sqlite:///{database}"))
    assert "read-only" in line or "cannot open" in line


def test_debug_log_level_keeps_the_traceback() -> None:
    result = run("--log-level", "DEBUG", "db", "upgrade", "--db", "postgres://u@h/db")
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("temporal-tracer: --db ")


@pytest.mark.parametrize(("flag", "what"), [("--port", "tracer UI"), ("--otlp-port", "OTLP")])
def test_busy_port_names_the_flag(tmp_path: Path, flag: str, what: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        other = "--otlp-port" if flag == "--port" else "--port"
        result = run(
            "serve",
            "--namespace",
            "orders",
            "--db",
            f"sqlite:///{tmp_path / 't.db'}",
            flag,
            str(port),
            other,
            str(free_port()),
        )
    line = one_line(result)
    assert line == (
        f"temporal-tracer: port {port} ({what}{' receiver' if what == 'OTLP' else ''}) "
        f"is already in use on 127.0.0.1: choose another with {flag}"
    )
