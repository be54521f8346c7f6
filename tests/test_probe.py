"""The container health checks: `python -m order_api.ops.probe` against a real HTTP server and
a real heartbeat file, and the worker's heartbeat itself."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from order_api.ops.probe import heartbeat_is_fresh, main
from order_api.worker import beat
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


def test_the_probe_passes_only_on_a_200(server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy in the environment is not used: the check is of this container's own process.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    assert main([f"{server_url}/live"]) == 0
    assert main([f"{server_url}/ready"]) == 1
    assert main([f"http://127.0.0.1:{free_port()}/live"]) == 1
    assert main(["file:///etc/passwd"]) == 1


def test_a_peer_that_does_not_speak_http_fails_the_probe() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        answering = threading.Thread(target=answer_garbage, args=(listener,), daemon=True)
        answering.start()
        assert main([f"http://127.0.0.1:{port}/live"]) == 1
        answering.join(timeout=10)


def answer_garbage(listener: socket.socket) -> None:
    connection, _ = listener.accept()
    with connection:
        connection.recv(4096)
        connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")


def test_the_probe_runs_as_a_module_without_the_app(server_url: str) -> None:
    # Exactly what the Dockerfile's HEALTHCHECK runs.
    command = [sys.executable, "-m", "order_api.ops.probe", f"{server_url}/live"]
    assert subprocess.run(command, check=False, timeout=60).returncode == 0
    modules = "import sys, order_api.ops.probe; print('fastapi' in sys.modules)"
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
