"""Buyers spread over two real API processes on PostgreSQL and Redis: stock holds exactly."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx2
from sqlalchemy import func, select

from order_api.orders.models import Order
from order_api.platform.db import create_engine, create_sessions
from order_api.products.models import Product
from tests.accounts import PASSWORD, bearer
from tests.processes import ADMIN, empty_database, migrate_and_create_admin, production_env
from tests.stream.test_two_processes import log_in
from tests.support import make_settings
from tests.test_cli import running_server

BUYERS, STOCK = 24, 5


async def buy(url: str, access_token: str, product_id: str) -> int:
    """One buyer on a connection of its own, so the kernel spreads buyers over both processes."""
    async with httpx2.AsyncClient(base_url=url, timeout=60) as client:
        body = {"items": [{"product_id": product_id, "quantity": 1}], "payment_method_id": "pm_1"}
        response = await client.post("/api/v1/orders", json=body, headers=bearer(access_token))
        return response.status_code


async def test_buyers_on_two_processes_get_exactly_the_stock(
    tmp_path: Path, postgres_database: str, redis_url: str, redis_prefix: str
) -> None:
    # Two dozen buyers sign up and log in from one address: above the default per-address limits.
    limits = {"RATE_LIMIT_REGISTRATION_PER_IP": "100/hour", "RATE_LIMIT_LOGIN_PER_IP": "100/minute"}
    env = production_env(postgres_database, redis_url, redis_prefix, **limits)
    migrate_and_create_admin(tmp_path, env)
    try:
        with running_server(tmp_path, "--workers", "2", **env) as server:
            async with httpx2.AsyncClient(base_url=server.url, timeout=60) as http:
                admin = await log_in(http, *ADMIN)
                product = await http.post(
                    "/api/v1/products",
                    json={"name": "Last few", "price_cents": 100, "stock": STOCK},
                    headers=bearer(admin),
                )
                assert product.status_code == 201, product.text
                tokens = []
                for index in range(BUYERS):
                    email = f"buyer{index}@example.com"
                    body = {"email": email, "password": PASSWORD, "full_name": "Buyer"}
                    assert (await http.post("/api/v1/users", json=body)).status_code == 201
                    tokens.append(await log_in(http, email))
            statuses = await asyncio.gather(
                *(buy(server.url, t, product.json()["id"]) for t in tokens)
            )
            server.stop()
            assert Counter(statuses) == {201: STOCK, 409: BUYERS - STOCK}
            settings = make_settings(postgres_database, tmp_path)
            engine = create_engine(settings)
            async with create_sessions(engine, settings)() as session:
                stock = await session.scalar(select(Product.stock))
                orders = await session.scalar(select(func.count()).select_from(Order))
            await engine.dispose()
            assert (stock, orders) == (0, STOCK)
    finally:
        await empty_database(postgres_database, tmp_path)
