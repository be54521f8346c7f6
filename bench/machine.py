"""What the figures were measured on: the machine and every version that matters."""

from __future__ import annotations

import asyncio
import os
import platform
from importlib.metadata import version
from pathlib import Path

import asyncpg
import redis.asyncio

from bench.scratch import ADMIN_DSN, REDIS_URL
from bench.tools import SetupError

PACKAGES = (
    "fastapi",
    "starlette",
    "pydantic",
    "sqlalchemy",
    "asyncpg",
    "uvicorn",
    "uvloop",
    "httptools",
    "redis",
    "limits",
)


def machine() -> dict[str, str]:
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    return {
        "CPU": cpu_model,
        "cores": str(os.cpu_count()),
        "RAM": f"{memory_kib / 1024 / 1024:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
    }


async def _server_versions() -> tuple[str, str]:
    connection = await asyncpg.connect(ADMIN_DSN, timeout=5)
    try:
        postgres = str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        redis_server = str((await client.info("server"))["redis_version"])
    finally:
        await client.aclose()
    return postgres, redis_server


def versions(wrk: str) -> dict[str, str]:
    try:
        postgres, redis_server = asyncio.run(_server_versions())
    except (OSError, asyncpg.PostgresError, redis.RedisError) as error:
        raise SetupError(f"PostgreSQL or Redis is not reachable: {error}") from None
    found = {"Python": platform.python_version()}
    found |= {package: version(package) for package in PACKAGES}
    found |= {"PostgreSQL server": postgres, "Redis server": redis_server, "wrk": wrk}
    return found
