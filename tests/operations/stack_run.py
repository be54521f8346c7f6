"""`order-api stack` as a test runs it: a real process tree on free ports, its output read as it
comes (a full pipe would stall every child), its own log lines parsed, stopped as Ctrl-C does.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2

from tests.test_cli import ORDER_API, STARTUP_WAIT_SECONDS, command_env, free_port

API_PROCESSES = 2


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def consecutive_free_ports(count: int) -> int:
    """The first of `count` free ports in a row (the stack gives its API processes such a run).

    Below the kernel's ephemeral range: there, the next port handed to another test's bind(0),
    or to any outgoing connection, could be the one after ours before the stack binds it.
    """
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(100):
        first = random.randrange(10_000, ephemeral_low - count)
        if all(port_is_free(first + i) for i in range(count)):
            return first
    raise AssertionError(f"no {count} consecutive free ports found")


class RunningStack:
    def __init__(self, process: subprocess.Popen[str], first_port: int) -> None:
        self.process = process
        self.urls = [f"http://127.0.0.1:{first_port + i}" for i in range(API_PROCESSES)]
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read_output, daemon=True)
        self._reader.start()

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def supervisor_events(self, event: str) -> list[dict[str, Any]]:
        """The stack's own log lines (its children's come prefixed with their names)."""
        parsed = [json.loads(line) for line in list(self.lines) if line.startswith("{")]
        return [line for line in parsed if line.get("event") == event]

    def pids(self, name: str) -> list[int]:
        """Every process id `name` has had, in start order."""
        return [
            e["pid"] for e in self.supervisor_events("stack_process_started") if e["name"] == name
        ]

    def child_output(self, name: str) -> str:
        prefix = f"{name:<9}| "
        return "".join(line[len(prefix) :] for line in list(self.lines) if line.startswith(prefix))

    def every_api_ready(self) -> bool:
        for url in self.urls:
            try:
                if httpx2.get(f"{url}/health/ready", timeout=2).status_code != 200:
                    return False
            except httpx2.TransportError:
                return False
        return True

    def interrupt(self) -> int:
        """Ctrl-C (to the whole group, as a terminal sends it), and the stack's exit status."""
        os.killpg(self.process.pid, signal.SIGINT)
        code = self.process.wait(timeout=60)
        self._reader.join(timeout=30)
        return code


@contextmanager
def running_stack(tmp_path: Path, *options: str, **env: str) -> Iterator[RunningStack]:
    """Started, every API process ready; killed whole at the end if the test did not stop it."""
    first_port, smtp_port = consecutive_free_ports(API_PROCESSES), free_port()
    mail_dir = tmp_path / "caught-mail"
    process = subprocess.Popen(
        [
            *(ORDER_API, "stack", "--port", str(first_port)),
            *("--api-processes", str(API_PROCESSES)),
            *("--smtp-port", str(smtp_port), "--mail-dir", str(mail_dir)),
            *options,
        ],
        cwd=tmp_path,
        env=command_env(tmp_path, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A group of its own, so a failed test takes every child down with the stack.
        start_new_session=True,
    )
    stack = RunningStack(process, first_port)
    try:
        deadline = time.monotonic() + STARTUP_WAIT_SECONDS
        while not stack.every_api_ready():
            assert process.poll() is None, "".join(stack.lines)
            assert time.monotonic() < deadline, "".join(stack.lines)
            time.sleep(0.2)
        yield stack
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
