"""Readiness: each back-end checked once, each check bounded so a hung one cannot hang probes."""

from __future__ import annotations

import asyncio
import time

import structlog
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from order_api.health.schemas import ComponentHealth, Readiness

logger = structlog.get_logger(__name__)


async def check_database(engine: AsyncEngine, timeout_seconds: float) -> ComponentHealth:
    started = time.perf_counter()
    detail: str | None = None
    try:
        async with asyncio.timeout(timeout_seconds), engine.connect() as connection:
            # Autocommit: no transaction, so no wait behind a writer's lock (SQLite) and no
            # BEGIN/ROLLBACK round trips (PostgreSQL).
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.execute(text("SELECT 1"))
    except TimeoutError:
        detail = f"timed out after {timeout_seconds} s"
    except (SQLAlchemyError, OSError) as error:
        detail = "unreachable"
        logger.warning("database_check_failed", error=type(error).__name__)
    latency_ms = round((time.perf_counter() - started) * 1000, 2)
    return ComponentHealth(status="down" if detail else "ok", latency_ms=latency_ms, detail=detail)


async def check_readiness(engine: AsyncEngine, timeout_seconds: float) -> Readiness:
    database = await check_database(engine, timeout_seconds)
    return Readiness(status=database.status, checks={"database": database})
