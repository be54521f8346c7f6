"""A Redis server of a test's own on a free port: started late, stopped, restarted or paused."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis.asyncio
from redis.exceptions import RedisError

from tests.smtp_server import free_port
from tests.waiting import wait_until


class RedisProcess:
    """Nothing is saved: a restart comes back empty, like `SHUTDOWN NOSAVE` then a start."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        self.process = subprocess.Popen([*command, "--appendonly", "no"], stdout=subprocess.DEVNULL)

    async def start_and_wait(self) -> None:
        self.start()
        await wait_until(self.answers, f"redis-server on port {self.port} to answer")

    async def answers(self) -> bool:
        client = redis.asyncio.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(await client.ping())
        except (RedisError, OSError):
            return False
        finally:
            await client.aclose()

    def pause(self) -> None:
        """A hung server: connections stay open, nothing is answered (`kill -STOP`)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()  # a stopped process would hold the SIGTERM until continued
            self.process.terminate()
            self.process.wait(timeout=30)


@contextmanager
def own_redis() -> Iterator[RedisProcess]:
    """A not yet started server, stopped at the end; the test is skipped without redis-server."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisProcess()
    try:
        yield server
    finally:
        server.stop()
