"""A real Arize Phoenix (``phoenix serve``) as an independent OTLP backend for tests.

Phoenix has heavy dependencies of its own, so it lives in its own virtualenv,
``.venv/phoenix`` (``TRACER_PHOENIX_BIN`` may name another ``phoenix`` executable).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import IO, Any

import httpx

__all__ = ["Phoenix", "find_phoenix", "flatten"]

ROOT = Path(__file__).resolve().parents[2]


def find_phoenix() -> Path | None:
    """The ``phoenix`` executable of the Phoenix virtualenv, if installed."""
    override = os.environ.get("TRACER_PHOENIX_BIN")
    path = Path(override) if override else ROOT / ".venv" / "phoenix" / "bin" / "phoenix"
    return path if path.exists() else None


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys, whether Phoenix answers with nested or flat attributes."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class Phoenix:
    """One ``phoenix serve`` on given ports and working directory; restartable."""

    def __init__(
        self, executable: Path, workdir: Path, port: int, grpc_port: int, log: Path
    ) -> None:
        self.executable = executable
        self.workdir = workdir
        self.port = port
        self.grpc_port = grpc_port
        self.log = log
        self.url = f"http://127.0.0.1:{port}"
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def start(self) -> None:
        """Start the server (returns at once; see :meth:`wait_ready`)."""
        env = {
            **os.environ,
            "PHOENIX_WORKING_DIR": str(self.workdir),
            "PHOENIX_PORT": str(self.port),
            "PHOENIX_GRPC_PORT": str(self.grpc_port),
            "PHOENIX_HOST": "127.0.0.1",
        }
        self._log_file = self.log.open("ab")
        self._process = subprocess.Popen(
            [str(self.executable), "serve"],
            env=env,
            cwd=self.workdir,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, timeout: float = 120) -> None:
        """Wait until the HTTP API answers (both OTLP receivers are up by then)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                assert self._process is not None
                if self._process.poll() is not None:
                    raise RuntimeError(f"phoenix serve exited; see {self.log}")
                try:
                    if (await client.get(f"{self.url}/healthz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise TimeoutError(f"phoenix serve not ready within {timeout}s; see {self.log}")

    def stop(self) -> None:
        """Stop the server, as an outage would."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._process = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    async def spans(self) -> list[dict[str, Any]]:
        """Every span Phoenix lists in its default project."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as client:
            while True:
                params: dict[str, Any] = {"limit": 1000}
                if cursor:
                    params["cursor"] = cursor
                response = await client.get("/v1/projects/default/spans", params=params)
                response.raise_for_status()
                body = response.json()
                found.extend(body["data"])
                cursor = body.get("next_cursor")
                if not cursor:
                    return found

    async def wait_for(self, span_ids: set[str], timeout: float = 30) -> dict[str, dict[str, Any]]:
        """Wait until every span id is listed; returns Phoenix's spans by span id."""
        deadline = time.monotonic() + timeout
        while True:
            by_id = {s["context"]["span_id"]: s for s in await self.spans()}
            missing = span_ids - by_id.keys()
            if not missing:
                return by_id
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(missing)} spans never reached Phoenix: {missing}")
            await asyncio.sleep(0.3)
