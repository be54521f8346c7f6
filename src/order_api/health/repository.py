"""The one statement readiness sends: `SELECT 1`, outside any transaction."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def select_one(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        # Autocommit: no transaction, so no wait behind a writer's lock (SQLite) and no
        # BEGIN/ROLLBACK round trips (PostgreSQL).
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(text("SELECT 1"))
