"""Baseline (d): FastAPI + asyncpg reading one product: the columns ProductRead shows."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI, HTTPException

from bench.baselines.database import database, pool_lifespan

SELECT_ACTIVE_PRODUCT = (
    "SELECT id, name, description, price_cents, stock, is_active, created_at, updated_at "
    "FROM products WHERE id = $1 AND is_active"
)

app = FastAPI(lifespan=pool_lifespan)


@app.get("/api/v1/products/{product_id}")
async def read_product(product_id: uuid.UUID) -> dict[str, Any]:
    row = await database.get().fetchrow(SELECT_ACTIVE_PRODUCT, product_id)
    if row is None:
        raise HTTPException(status_code=404)
    return dict(row)
