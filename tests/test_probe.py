"""The container health checks: `python -m order_api.probe` against a real HTTP server and a real
heartbeat file, and the worker's heartbeat itself."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from order_api.background import beat
from order_api.probe import heartbeat_is_fresh, main
from tests.test_cli import free_port
from tests.waiting import wait_until


class Answers(BaseHTTPRequestHandler):
    """200 on /live, 503 on /ready."""

    def do_GET(self) -> None:
        self.send_response(503 if self.path == "/ready" else 200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads exit codes, not the server's log."""


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_probe_passes_only_on_a_200(server_url: str) -> None:
    assert main([f"{server_url}/live"]) == 0
    assert main([f"{server_url}/ready"]) == 1
    assert main([f"http://127.0.0.1:{free_port()}/live"]) == 1
    assert main(["file:///etc/passwd"]) == 1


def test_the_probe_runs_as_a_module_without_the_app(server_url: str) -> None:
    # Exactly what the Dockerfile's HEALTHCHECK runs.
    command = [sys.executable, "-m", "order_api.probe", f"{server_url}/live"]
    assert subprocess.run(command, check=False, timeout=60).returncode == 0
    modules = "import sys, order_api.probe; print('fastapi' in sys.modules)"
    loaded = subprocess.run(
        [sys.executable, "-c", modules], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "False"


def test_a_heartbeat_is_fresh_until_it_is_older_than_its_limit(tmp_path: Path) -> None:
    heartbeat = tmp_path / "worker.heartbeat"
    assert main(["--heartbeat", str(heartbeat)]) == 1  # never written
    heartbeat.touch()
    assert main(["--heartbeat", str(heartbeat), "--max-age", "30"]) == 0
    an_hour_ago = time.time() - 3600
    os.utime(heartbeat, (an_hour_ago, an_hour_ago))
    assert main(["--heartbeat", str(heartbeat), "--max-age", "30"]) == 1
    assert heartbeat_is_fresh(heartbeat, 7200)


async def test_the_worker_heartbeat_beats_until_the_worker_stops(tmp_path: Path) -> None:
    heartbeat = tmp_path / "run" / "worker.heartbeat"
    stopping = asyncio.Event()
    beating = asyncio.create_task(beat(heartbeat, stopping))
    await wait_until(heartbeat.exists, "the first beat")
    an_hour_ago = time.time() - 3600
    os.utime(heartbeat, (an_hour_ago, an_hour_ago))
    await wait_until(lambda: heartbeat_is_fresh(heartbeat, 30), "the next beat")
    stopping.set()
    await beating
    assert not heartbeat.exists()  # a stopped worker is not alive
