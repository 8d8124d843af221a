"""No acknowledged loss, and a readiness that tells the truth, under faults: the real
``temporal-tracer serve`` process (run as an unprivileged user when the tests run as root,
so file permissions mean what they say), real SQLite files and PostgreSQL servers, the
session's real Temporal dev server, real HTTP.

In each fault the collector answers 200 only for spans it committed to the database a
restart opens: every span that got a 200 is found after recovery.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, select

from tests._postgres import postgres_bindir, postgres_cluster
from tests.conftest import skip_or_fail
from tests.tracer.test_otlp_receiver import PROTOBUF, request_body, valid_span
from tracer.db import Span
from tracer.devserver import DevServer, free_port

TOKEN = "fault-test-otlp-token"
NAMESPACES = "orders,payments"


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A folder the collector's (unprivileged) user owns; not under pytest's temporary
    folder, which only its owner may enter."""
    base = Path(tempfile.mkdtemp(prefix="temporal-tracer-faults-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        _make_writable(base)
        shutil.rmtree(base, ignore_errors=True)


def _unprivileged() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        skip_or_fail("setpriv (util-linux) is needed to run the collector as nobody")
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


def _give(path: Path) -> None:
    """Hand ``path`` to the collector's user."""
    if os.geteuid() == 0:
        shutil.chown(path, "nobody", "nogroup")


def _make_writable(path: Path) -> None:
    for folder, _, files in os.walk(path):
        os.chmod(folder, 0o755)
        for name in files:
            with contextlib.suppress(OSError):
                os.chmod(Path(folder) / name, 0o644)


@dataclass
class Collector:
    """A ``temporal-tracer serve`` process."""

    ui: str
    otlp: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def collector(db_url: str, temporal_address: str, workdir: Path) -> Iterator[Collector]:
    """Run ``serve`` until the context exits; it must come up within 30 s."""
    port, otlp_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TEMPORAL", "OTEL_"))},
        "TEMPORAL_ADDRESS": temporal_address,
        "TEMPORAL_TRACER_NAMESPACES": NAMESPACES,
        "TEMPORAL_TRACER_DB": db_url,
        "TEMPORAL_TRACER_PORT": str(port),
        "TEMPORAL_TRACER_OTLP_PORT": str(otlp_port),
        "TEMPORAL_TRACER_OTLP_GRPC_PORT": "0",
        "TEMPORAL_TRACER_POLL_INTERVAL": "0.3",
        "TEMPORAL_TRACER_OTLP_TOKEN": TOKEN,
    }
    log = workdir / f"collector-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*_unprivileged(), sys.executable, "-m", "tracer", "serve"],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Collector(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{otlp_port}", process, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"serve exited: {running.output()}"
            assert time.monotonic() < deadline, f"serve did not start: {running.output()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{running.ui}/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Sender:
    """An exporter's view: each span sent once, retried until it gets a 200."""

    otlp: str
    acknowledged: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    statuses: list[int] = field(default_factory=list)
    _next: int = 1

    def send(self, span_id: str | None = None) -> int:
        """Send one span (a new one, or ``span_id`` again); return the status."""
        if span_id is None:
            span_id = f"{self._next:016x}"
            self._next += 1
        body = request_body(valid_span(span_id=bytes.fromhex(span_id))).SerializeToString()
        try:
            status = httpx.post(
                f"{self.otlp}/v1/traces",
                content=body,
                headers={**PROTOBUF, "Authorization": f"Bearer {TOKEN}"},
                timeout=15,
            ).status_code
        except httpx.HTTPError:
            status = 0
        self.statuses.append(status)
        if status == 200:
            self.acknowledged.add(span_id)
            self.refused.discard(span_id)
        else:
            self.refused.add(span_id)
        return status

    def send_many(self, count: int) -> list[int]:
        return [self.send() for _ in range(count)]

    def retry_refused(self) -> bool:
        """Send every refused span again; whether all are taken now."""
        for span_id in sorted(self.refused):
            self.send(span_id)
        return not self.refused


def stored_ids(db_url: str) -> set[str]:
    """The span ids in the database at ``db_url`` (read as the test's own user)."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            return set(connection.scalars(select(Span.span_id)))
    finally:
        engine.dispose()


def readiness(ui: str) -> tuple[int, dict[str, object]]:
    """``/readyz``'s status and ``/api/namespaces``' readiness."""
    ready = httpx.get(f"{ui}/readyz", timeout=15)
    detail = httpx.get(f"{ui}/api/namespaces", timeout=15).json()["readiness"]
    return ready.status_code, detail


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _ready(ui: str) -> bool:
    return httpx.get(f"{ui}/readyz", timeout=15).status_code == 200


# --- SQLite: the folder deleted, moved away, made unwritable ----------------------------


def _sqlite(workdir: Path) -> tuple[Path, str]:
    data = workdir / "data"
    data.mkdir()
    _give(data)
    return data, f"sqlite:///{data / 'tracer.db'}"


def test_folder_deleted_mid_run_is_never_acknowledged(
    temporal_server: DevServer, workdir: Path
) -> None:
    """Before: 1,860 spans got 200 after the folder was deleted, /readyz stayed 200, and a
    restart found an empty store."""
    data, url = _sqlite(workdir)
    with collector(url, temporal_server.address, workdir) as running:
        sender = Sender(running.otlp)
        assert sender.send_many(10) == [200] * 10
        wait_for(lambda: _ready(running.ui), 30, "ready")
        before = set(sender.acknowledged)
        shutil.rmtree(data)  # and with it what was committed: that is the operator's loss
        after = sender.send_many(20)
        assert 200 not in after, after
        status, detail = readiness(running.ui)
        assert status == 503
        assert "is gone" in str(detail["database_file"]), detail
        assert "database_file" in httpx.get(f"{running.ui}/readyz").json()["failing"]
    assert sender.acknowledged == before
    # Recovery: the folder is back and the collector restarted on a new file; the spans
    # it refused are sent again, as exporters retry them.
    data.mkdir()
    _give(data)
    with collector(url, temporal_server.address, workdir) as running:
        sender.otlp = running.otlp
        sender.retry_refused()
        wait_for(lambda: _ready(running.ui), 30, "ready again")
        assert not sender.refused
    found = stored_ids(url)
    acknowledged_after = sender.acknowledged - before
    assert len(acknowledged_after) == 20 and acknowledged_after <= found
    assert not before & found  # the deleted folder took those: nothing pretends otherwise


def test_folder_moved_away_and_back_loses_nothing(
    temporal_server: DevServer, workdir: Path
) -> None:
    data, url = _sqlite(workdir)
    with collector(url, temporal_server.address, workdir) as running:
        sender = Sender(running.otlp)
        sender.send_many(10)
        moved = workdir / "moved"
        data.rename(moved)
        assert 200 not in sender.send_many(10)
        assert readiness(running.ui)[0] == 503
        moved.rename(data)
        sender.retry_refused()
        sender.send_many(10)
        wait_for(lambda: _ready(running.ui), 30, "ready again")
    assert len(sender.acknowledged) == 30 and not sender.refused
    assert sender.acknowledged <= stored_ids(url)


def test_files_made_unwritable(temporal_server: DevServer, workdir: Path) -> None:
    """Before: posts got 503 but /readyz stayed 200. A span acknowledged through a
    connection opened before the change is in the file all the same."""
    if os.geteuid() == 0 and not _unprivileged():
        pytest.skip("cannot drop root")
    data, url = _sqlite(workdir)
    with collector(url, temporal_server.address, workdir) as running:
        sender = Sender(running.otlp)
        sender.send_many(10)
        wait_for(lambda: _ready(running.ui), 30, "ready")
        for path in [data, *data.iterdir()]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        sender.send_many(20)
        status, detail = readiness(running.ui)
        assert status == 503
        assert "cannot commit" in str(detail["store"]), detail
        _make_writable(data)
        wait_for(lambda: _ready(running.ui), 30, "ready again")
        # As an exporter does: what got a 503 is sent again until it is taken.
        wait_for(sender.retry_refused, 30, "the refused spans taken")
        sender.send_many(10)
    assert not sender.refused
    assert sender.acknowledged <= stored_ids(url)
    assert len(sender.acknowledged) == 40


# --- PostgreSQL stopped ----------------------------------------------------------------


def test_postgresql_stopped_and_started_again(temporal_server: DevServer, workdir: Path) -> None:
    bindir = postgres_bindir()
    if bindir is None:
        skip_or_fail("PostgreSQL server binaries (Debian package postgresql) are not installed")
    assert bindir is not None
    with postgres_cluster(bindir) as cluster:
        with collector(cluster.url, temporal_server.address, workdir) as running:
            sender = Sender(running.otlp)
            assert sender.send_many(10) == [200] * 10
            wait_for(lambda: _ready(running.ui), 30, "ready")
            cluster.stop()
            assert 200 not in sender.send_many(10)
            assert httpx.get(f"{running.ui}/readyz", timeout=15).status_code == 503
            cluster.start()
            wait_for(lambda: _ready(running.ui), 30, "ready again")
            sender.retry_refused()
            sender.send_many(10)
        assert not sender.refused and len(sender.acknowledged) == 30
        assert sender.acknowledged <= stored_ids(cluster.url)


# --- Temporal unreachable at start -----------------------------------------------------


async def test_temporal_unreachable_at_start(workdir: Path) -> None:
    """Before: /readyz said ready with no Temporal to read from. Spans are still taken
    (the store is fine) and all of them are there once Temporal is."""
    from tracer.demo.model import ENDPOINTS
    from tracer.demo.model import NAMESPACES as SAMPLE_NAMESPACES

    server = DevServer(
        namespaces=SAMPLE_NAMESPACES,
        endpoints=ENDPOINTS,
        port=free_port(),
        log_file=workdir / "temporal.log",
    )
    _, url = _sqlite(workdir)
    with collector(url, server.address, workdir) as running:
        sender = Sender(running.otlp)
        assert sender.send_many(10) == [200] * 10
        time.sleep(1.5)  # a few linker passes fail
        status, detail = readiness(running.ui)
        assert status == 503, detail
        assert "no linked namespace is reachable" in str(detail["temporal"])
        assert (detail["store"], detail["database_file"]) == ("ok", "ok")
        assert httpx.get(f"{running.ui}/readyz").json()["failing"] == ["temporal"]
        server.start()
        try:
            await server.wait_ready()
            wait_for(lambda: _ready(running.ui), 60, "ready once Temporal is up")
            sender.send_many(10)
        finally:
            server.stop()
    assert len(sender.acknowledged) == 20 and sender.acknowledged <= stored_ids(url)
