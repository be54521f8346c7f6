"""Our Redis client retries a command once: a stale connection recovers, a hung server costs two
timeouts and no more."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from order_api.platform.adapters import RedisCache, connect_redis
from tests.redis_server import own_redis
from tests.support import make_settings


@dataclass
class SilentServer:
    """Accepts connections and never answers: a hung Redis, as a client sees it."""

    port: int = 0
    connections: int = 0
    held: list[asyncio.StreamWriter] = field(default_factory=list)


@pytest.fixture
async def silent_redis() -> AsyncIterator[SilentServer]:
    silent = SilentServer()

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.connections += 1
        silent.held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    silent.port = int(server.sockets[0].getsockname()[1])
    try:
        yield silent
    finally:
        for writer in silent.held:
            writer.close()
        server.close()


async def test_a_hung_redis_is_tried_twice_then_given_up(
    silent_redis: SilentServer, tmp_path: Path
) -> None:
    settings = make_settings("sqlite+aiosqlite:///unused", tmp_path, redis_timeout_seconds=0.2)
    client = connect_redis(f"redis://127.0.0.1:{silent_redis.port}/0", settings)
    try:
        with pytest.raises(RedisTimeoutError):
            await client.get("anything")
        assert silent_redis.connections == 2  # the first try, then one retry on a new connection
        # The cache turns that into a miss: a request carries on from the database.
        assert await RedisCache(client, "order-api-test").get("popular") is None
        assert silent_redis.connections == 4
    finally:
        await client.aclose()


async def test_a_redis_restart_costs_no_failed_command(tmp_path: Path) -> None:
    with own_redis() as server:
        await server.start_and_wait()
        settings = make_settings("sqlite+aiosqlite:///unused", tmp_path)
        client = connect_redis(server.url, settings)
        try:
            await client.set("k", "before")
            server.stop()
            await server.start_and_wait()
            # The pooled connection died with the server: the retry reconnects, silently.
            assert await client.get("k") is None  # a fresh, empty server
            await client.set("k", "after")
        finally:
            await client.aclose()
