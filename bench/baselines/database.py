"""The baselines' one asyncpg pool, opened and closed by the app's lifespan: asyncpg's default
options but its size, which the bench sets to order-api's (10 in a measuring run)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI

# A plain libpq URL of the bench's database, set by the bench for every baseline process.
DSN_VARIABLE = "BENCH_BASELINE_DSN"
POOL_SIZE_VARIABLE = "BENCH_BASELINE_POOL_SIZE"


class PoolHolder:
    """Where the lifespan leaves the pool for the routes: a module global, as a bare app would."""

    pool: asyncpg.Pool | None = None

    def get(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("the pool is opened by the app's lifespan")
        return self.pool


database = PoolHolder()


@asynccontextmanager
async def pool_lifespan(app: FastAPI) -> AsyncIterator[None]:
    size = int(os.environ[POOL_SIZE_VARIABLE])
    database.pool = await asyncpg.create_pool(
        os.environ[DSN_VARIABLE], min_size=size, max_size=size
    )
    try:
        yield
    finally:
        await database.pool.close()
        database.pool = None
