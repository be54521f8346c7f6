"""The bench's own PostgreSQL database and Redis key prefix, removed at the end whatever happens.

Only the database this process created is dropped and only keys under its own prefix deleted.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import asyncpg
import redis.asyncio
from sqlalchemy import make_url

ADMIN_DSN = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass(frozen=True)
class Scratch:
    """Names of this run's own resources (the pid makes them unique on the machine)."""

    database: str
    redis_prefix: str

    @classmethod
    def for_process(cls, pid: int) -> Scratch:
        return cls(database=f"order_api_bench_{pid}", redis_prefix=f"order-api-bench-{pid}")

    @property
    def database_url(self) -> str:
        """A plain libpq URL: order-api picks its async driver itself."""
        url = make_url(ADMIN_DSN).set(drivername="postgresql", database=self.database)
        return url.render_as_string(hide_password=False)


async def _run_as_admin(statement: str) -> None:
    # CREATE/DROP DATABASE refuse to run in a transaction: one statement, autocommit.
    connection = await asyncpg.connect(ADMIN_DSN, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _delete_keys(prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@contextmanager
def scratch_database(scratch: Scratch) -> Iterator[str]:
    """CREATE the database, yield its URL, DROP it (WITH FORCE: servers may still hold it)."""
    asyncio.run(_run_as_admin(f'CREATE DATABASE "{scratch.database}"'))
    try:
        yield scratch.database_url
    finally:
        asyncio.run(_run_as_admin(f'DROP DATABASE IF EXISTS "{scratch.database}" WITH (FORCE)'))


@contextmanager
def scratch_redis_prefix(scratch: Scratch) -> Iterator[str]:
    """Yield the prefix; every key under it is deleted at the end."""
    try:
        yield scratch.redis_prefix
    finally:
        asyncio.run(_delete_keys(scratch.redis_prefix))
