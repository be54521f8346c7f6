"""The baselines' one asyncpg pool, default options, opened and closed by the app's lifespan."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI

# A plain libpq URL of the bench's database, set by the bench for every baseline process.
DSN_VARIABLE = "BENCH_BASELINE_DSN"


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
    database.pool = await asyncpg.create_pool(os.environ[DSN_VARIABLE])
    try:
        yield
    finally:
        await database.pool.close()
        database.pool = None
