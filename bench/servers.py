"""The servers under test: started each on a free port, in a process group of its own, and
stopped together at the end."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2

from bench.process_cpu import descendants_and_self
from bench.tools import SERVER_CORE, SetupError, pinned

READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class ServerSpec:
    name: str
    command: list[str]
    environment: dict[str, str]
    pinned: bool
    # uvicorn's worker processes to wait for (the supervisor is one more process).
    workers: int = 1


@dataclass
class Server:
    spec: ServerSpec
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 5) -> str:
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return "\n".join(text[-lines:])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(spec: ServerSpec, workdir: Path) -> Server:
    port = free_port()
    log_path = workdir / f"{spec.name}.log"
    command = pinned([*spec.command, "--port", str(port)], SERVER_CORE, spec.pinned)
    with log_path.open("wb") as log:
        # stderr is the JSON access log: a real deployment writes it, so it goes to a file.
        process = subprocess.Popen(  # noqa: S603 - our own commands
            command,
            cwd=workdir,
            env=spec.environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Server(spec, process, port, log_path)


def wait_until_ready(server: Server) -> None:
    """Wait for any HTTP answer on `/` (after the app's lifespan started) and every worker."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SetupError(f"{server.spec.name} exited at start-up:\n{server.log_tail()}")
        try:
            answered = httpx2.get(f"{server.url}/", timeout=1).status_code > 0
        except httpx2.TransportError:
            answered = False
        processes = len(descendants_and_self(server.process.pid))
        if answered and processes >= server.spec.workers + (server.spec.workers > 1):
            return
        time.sleep(0.2)
    raise SetupError(f"{server.spec.name} not ready in {READY_TIMEOUT_SECONDS:.0f} s")


def stop(server: Server) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()


@contextmanager
def running(specs: Sequence[ServerSpec], workdir: Path) -> Iterator[Mapping[str, Server]]:
    """Every server started at once (they import in parallel), ready, and stopped at the end."""
    servers: dict[str, Server] = {}
    try:
        for spec in specs:
            servers[spec.name] = start(spec, workdir)
        for server in servers.values():
            wait_until_ready(server)
        yield servers
    finally:
        for server in servers.values():
            stop(server)
