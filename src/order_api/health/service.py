"""Readiness: each back-end checked once, each check bounded so a hung one cannot hang probes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

import redis.asyncio
import structlog
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from order_api.health import repository
from order_api.health.schemas import ComponentHealth, Readiness, ReadinessState

logger = structlog.get_logger(__name__)


async def check_database(engine: AsyncEngine, timeout_seconds: float) -> ComponentHealth:
    probe = repository.select_one(engine)
    return await _bounded_check("database", probe, SQLAlchemyError, timeout_seconds)


async def check_redis(client: redis.asyncio.Redis, timeout_seconds: float) -> ComponentHealth:
    return await _bounded_check("redis", client.ping(), RedisError, timeout_seconds)


async def _bounded_check(
    component: str,
    probe: Awaitable[object],
    failure: type[Exception],
    timeout_seconds: float,
) -> ComponentHealth:
    started = time.perf_counter()
    detail: str | None = None
    try:
        async with asyncio.timeout(timeout_seconds):
            await probe
    except TimeoutError:
        detail = f"timed out after {timeout_seconds} s"
    except (failure, OSError) as error:
        detail = "unreachable"
        logger.warning(f"{component}_check_failed", error=type(error).__name__)
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    return ComponentHealth(status="down" if detail else "ok", latency_ms=latency_ms, detail=detail)


async def check_readiness(
    engine: AsyncEngine, redis_client: redis.asyncio.Redis | None, timeout_seconds: float
) -> Readiness:
    """`down` only when the database is (SPEC §5.7); a Redis outage is `degraded`: the process
    still serves, with cache misses, in-process fallbacks and delayed events."""
    checks = {"database": check_database(engine, timeout_seconds)}
    if redis_client is not None:
        checks["redis"] = check_redis(redis_client, timeout_seconds)
    results = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
    if results["database"].status == "down":
        status: ReadinessState = "down"
    elif any(check.status == "down" for check in results.values()):
        status = "degraded"
    else:
        status = "ok"
    return Readiness(status=status, checks=results)
