"""A byte cache with expiry: in-process for embedded mode, Redis (shared by every process) else."""

from __future__ import annotations

import time
from typing import Annotated, Protocol

import redis.asyncio
import structlog
from fastapi import Depends
from fastapi.requests import HTTPConnection
from redis.exceptions import RedisError

logger = structlog.get_logger(__name__)


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None: ...

    async def delete(self, key: str) -> None: ...


class InProcessCache:
    """One process's cache: embedded mode has only one process, so nothing else can go stale."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, bytes]] = {}

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] <= time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1]

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        self._entries[key] = (time.monotonic() + ttl_seconds, value)

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)


class RedisCache:
    """Shared by every process, so a delete invalidates them all. Redis trouble is a cache miss:
    the caller reads the database instead, and a failed delete leaves at most one TTL of staleness.
    """

    def __init__(self, client: redis.asyncio.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = f"{prefix}:cache:"

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._client.get(self._prefix + key)
        except (RedisError, OSError) as error:
            logger.warning("cache_unavailable", operation="get", error=str(error))
            return None
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        try:
            await self._client.set(self._prefix + key, value, px=int(ttl_seconds * 1000))
        except (RedisError, OSError) as error:
            logger.warning("cache_unavailable", operation="set", error=str(error))

    async def delete(self, key: str) -> None:
        try:
            await self._client.delete(self._prefix + key)
        except (RedisError, OSError) as error:
            logger.warning("cache_unavailable", operation="delete", error=str(error))


async def app_cache(connection: HTTPConnection) -> Cache:
    cache: Cache = connection.app.state.cache
    return cache


CacheDep = Annotated[Cache, Depends(app_cache)]
