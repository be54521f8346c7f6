"""PostgreSQL under lock contention: waits end as 503s, and no retry or change is lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx2
import pytest
from sqlalchemy import func, select, update

from order_api.orders.models import IdempotencyRecord, Order
from tests.accounts import Account, Shop, ShopFactory
from tests.catalogue import create_product, stock_of, submit_order
from tests.test_errors import assert_problem
from tests.waiting import wait_until

pytestmark = pytest.mark.only_backend("postgresql")


@asynccontextmanager
async def product_row_locked(database_url: str, product_id: str) -> AsyncIterator[None]:
    """Another session holds the product's row lock until the block ends."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn)
    transaction = connection.transaction()
    await transaction.start()
    try:
        await connection.execute("SELECT 1 FROM products WHERE id = $1 FOR UPDATE", product_id)
        yield
    finally:
        await transaction.rollback()
        await connection.close()


async def claims(shop: Shop) -> list[IdempotencyRecord]:
    async with shop.app.state.sessionmaker() as session:
        return list(await session.scalars(select(IdempotencyRecord)))


async def order_count(shop: Shop) -> int:
    async with shop.app.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Order)) or 0)


def one_of(product: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"product_id": product["id"], "quantity": 1}]


async def test_a_lock_wait_past_the_statement_timeout_is_a_503_and_frees_the_key(
    make_shop: ShopFactory, migrated_database: str, staff: Account, customer: Account
) -> None:
    shop = await make_shop(db_statement_timeout_ms=300)
    product = await create_product(shop, staff.headers, stock=3)
    headers = {**customer.headers, "Idempotency-Key": "slow-1"}
    async with product_row_locked(migrated_database, product["id"]):
        response = await submit_order(shop, headers, one_of(product))
    assert_problem(response, 503, "service_unavailable")
    assert response.headers["retry-after"] == "1"
    assert await stock_of(shop, product["id"]) == 3
    retry = await submit_order(shop, headers, one_of(product))
    assert retry.status_code == 201, retry.text
    assert await stock_of(shop, product["id"]) == 2


async def test_a_claim_taken_over_while_its_request_still_runs_yields_one_order(
    shop: Shop, migrated_database: str, staff: Account, customer: Account
) -> None:
    product = await create_product(shop, staff.headers, stock=5)
    headers = {**customer.headers, "Idempotency-Key": "slow-2"}
    async with product_row_locked(migrated_database, product["id"]):
        first = asyncio.ensure_future(submit_order(shop, headers, one_of(product)))
        await wait_for_claims(shop, 1)
        # The first request looks dead (no outcome for over a minute): a retry takes it over.
        async with shop.app.state.sessionmaker() as session:
            await session.execute(
                update(IdempotencyRecord).values(
                    created_at=datetime.now(UTC) - timedelta(seconds=61)
                )
            )
            await session.commit()
        second = asyncio.ensure_future(submit_order(shop, headers, one_of(product)))
        await wait_for_takeover(shop)
    responses: list[httpx2.Response] = [await first, await second]
    assert sorted(response.status_code for response in responses) == [201, 409]
    assert await order_count(shop) == 1
    assert await stock_of(shop, product["id"]) == 4


async def wait_for_claims(shop: Shop, count: int) -> None:
    async def claimed() -> bool:
        return len(await claims(shop)) == count

    await wait_until(claimed, "the first request's claim")


async def wait_for_takeover(shop: Shop) -> None:
    async def taken_over() -> bool:
        [record] = await claims(shop)
        return record.created_at > datetime.now(UTC) - timedelta(seconds=30)

    await wait_until(taken_over, "the retry taking the claim over")
