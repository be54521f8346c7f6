"""Helpers shared by the tests: throw-away databases, settings, and the app client type."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
import redis.asyncio
from fastapi import FastAPI
from sqlalchemy import delete, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from order_api.config import Settings
from order_api.platform.db import Base

IN_CI = os.environ.get("CI", "").lower() == "true"
TEST_POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TEST_SECRET_KEY = "test-secret-" + "x" * 40
BACKENDS = ["sqlite", "postgresql"]
# Each app and process of a test pools at most this many PostgreSQL connections (production: 10).
TEST_DB_POOL_SIZE = 4
# Checked free before the run starts: its measured peak, both pytest workers together, was 23
# connections (decision 110), and a test's largest topology, `order-api stack`'s three processes
# beside an in-process app, could take 4 pools on each worker.
SUITE_CONNECTION_BUDGET = 40

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

AppFactory = Callable[..., Awaitable[httpx2.AsyncClient]]
AppBuilder = Callable[..., Awaitable[FastAPI]]


def admin_postgres_dsn() -> str:
    """The maintenance database we connect to for CREATE/DROP DATABASE, as a plain libpq URL."""
    return make_url(TEST_POSTGRES_URL).set(drivername="postgresql").render_as_string(False)


async def postgres_reachable() -> str | None:
    try:
        connection = await asyncpg.connect(admin_postgres_dsn(), timeout=3)
    except asyncpg.TooManyConnectionsError as error:
        return f"PostgreSQL at {TEST_POSTGRES_URL} refuses connections: {error}"
    except (OSError, asyncpg.PostgresError) as error:
        return f"PostgreSQL at {TEST_POSTGRES_URL} is not reachable ({type(error).__name__})"
    await connection.close()
    return None


async def postgres_too_busy(needed: int = SUITE_CONNECTION_BUDGET) -> str | None:
    """Why the server cannot take this run's connections, or None: a shared server another
    stack or suite fills would otherwise fail tests at random with "too many clients"."""
    connection = await asyncpg.connect(admin_postgres_dsn(), timeout=3)
    try:
        usable: int = await connection.fetchval(
            "SELECT current_setting('max_connections')::int"
            " - current_setting('superuser_reserved_connections')::int"
        )
        used: int = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        )
    finally:
        await connection.close()
    if usable - used >= needed:
        return None
    return (
        f"PostgreSQL at {TEST_POSTGRES_URL} has {usable - used} of its {usable} connections free "
        f"({used} held by other clients) and this run needs up to {needed}: "
        "stop the other stack or test run, or raise max_connections"
    )


async def redis_reachable() -> str | None:
    client = redis.asyncio.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=3)
    try:
        await client.ping()
    except (OSError, redis.RedisError) as error:
        return f"Redis at {TEST_REDIS_URL} is not reachable ({type(error).__name__})"
    finally:
        await client.aclose()
    return None


async def delete_redis_keys(url: str, prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def run_as_admin(statement: str) -> None:
    """One statement on the maintenance database: CREATE/DROP DATABASE refuse transactions."""
    connection = await asyncpg.connect(admin_postgres_dsn())
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def create_database(name: str) -> str:
    await run_as_admin(f'CREATE DATABASE "{name}"')
    url = make_url(TEST_POSTGRES_URL).set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(False)


async def drop_database(name: str) -> None:
    await run_as_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "secret_key": TEST_SECRET_KEY,
        "data_dir": data_dir,
        "log_format": "json",
        # Cheap Argon2 for tests; tests/identity/test_login.py checks the production profile.
        "password_hash_memory_kib": 256,
        "password_hash_iterations": 1,
        # Suites log in and register far more often than a person; tests/edge/ turns limits on.
        "rate_limit_enabled": False,
        "db_pool_size": TEST_DB_POOL_SIZE,
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)


async def delete_all_rows(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(delete(table))
