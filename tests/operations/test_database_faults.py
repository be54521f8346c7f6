"""Killed PostgreSQL connections under a running API (reliability row FLT-03): pre-ping replaces
the dead pooled connections, so the first request after the kill succeeds; requests caught by a
kill end in a 503 problem with Retry-After, never a 500 or a hang; idempotent retries yield
exactly one order. Readiness after one kill is tests/test_health.py's; here, after repeated ones."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, contextmanager
from typing import Any

import asyncpg
import httpx2
import pytest
from sqlalchemy import Connection, event, func, make_url, select
from sqlalchemy.ext.asyncio import AsyncEngine

from order_api.orders.models import Order
from order_api.platform.db import checkouts
from order_api.users.models import Role
from tests.accounts import Account, Shop, ShopFactory
from tests.catalogue import (
    ORDERS,
    PAYMENT_METHOD_ID,
    PRODUCTS,
    create_product,
    sessions,
    stock_of,
)
from tests.support import admin_postgres_dsn
from tests.test_errors import assert_problem
from tests.waiting import WAIT_LIMIT_SECONDS

pytestmark = pytest.mark.only_backend("postgresql")

CLIENTS = 4
KILLS = 6
PLACEMENTS_PER_CLIENT = 6
TERMINATION_WAIT_MS = 5000


async def kill_backends(database_url: str, *, wait: bool = True) -> int:
    """Terminate every connection to the app's database but our own, as a restart would: each
    backend is gone (its socket closed) before this returns, as before a restarted server is up."""
    admin = await asyncpg.connect(admin_postgres_dsn())
    try:
        killed: int = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid, $2)) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            make_url(database_url).database,
            TERMINATION_WAIT_MS if wait else 0,
        )
    finally:
        await admin.close()
    return killed


async def test_a_connection_idle_long_enough_is_pinged_before_use(
    make_shop: ShopFactory, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop, customer, product = await shop_with_a_product(make_shop, stock=100)
    assert await one_per_endpoint(shop, customer, product["id"]) == [200, 200, 201]
    monkeypatch.setattr(checkouts, "PING_AFTER_IDLE_SECONDS", 0.0)
    # Not waiting for the backends to end: the sockets may look open still; the ping finds out.
    assert await kill_backends(database_url, wait=False) >= 1
    assert await one_per_endpoint(shop, customer, product["id"]) == [200, 200, 201]


def placement(product_id: str) -> dict[str, Any]:
    items = [{"product_id": product_id, "quantity": 1}]
    return {"items": items, "payment_method_id": PAYMENT_METHOD_ID}


def keyed(account: Account, key: str) -> dict[str, str]:
    return {**account.headers, "Idempotency-Key": key}


async def one_per_endpoint(shop: Shop, customer: Account, product_id: str) -> list[int]:
    """GET a product, GET the orders, POST an order: the statuses."""
    product = await shop.client.get(f"{PRODUCTS}/{product_id}")
    listing = await shop.client.get(ORDERS, headers=customer.headers)
    placed = await shop.client.post(
        ORDERS, json=placement(product_id), headers=keyed(customer, str(uuid.uuid4()))
    )
    return [product.status_code, listing.status_code, placed.status_code]


async def shop_with_a_product(
    make_shop: ShopFactory, stock: int
) -> tuple[Shop, Account, dict[str, Any]]:
    """A shop, a logged-in customer, and a product with that stock (made by staff)."""
    shop = await make_shop()
    staff = await shop.account(Role.STAFF)
    product = await create_product(shop, staff.headers, stock=stock)
    return shop, await shop.account(), product


async def test_the_first_requests_after_killed_connections_succeed(
    make_shop: ShopFactory, database_url: str
) -> None:
    shop, customer, product = await shop_with_a_product(make_shop, stock=100)
    # Concurrent rounds, so the pool holds several connections when they are killed.
    for _ in range(3):
        rounds = [one_per_endpoint(shop, customer, product["id"]) for _ in range(4)]
        for statuses in await asyncio.gather(*rounds):
            assert statuses == [200, 200, 201]
    # Three connections held at once, so the pool surely keeps several to be killed.
    engine: AsyncEngine = shop.app.state.engine
    async with AsyncExitStack() as held:
        for _ in range(3):
            await held.enter_async_context(engine.connect())
    pool = engine.sync_engine.pool
    # Counted in and out: the outbox relay may hold one of them at this very moment.
    assert pool.checkedin() + pool.checkedout() >= 3  # type: ignore[attr-defined]

    assert await kill_backends(database_url) >= 2
    assert await one_per_endpoint(shop, customer, product["id"]) == [200, 200, 201]


async def kill_backend(pid: int) -> None:
    admin = await asyncpg.connect(admin_postgres_dsn())
    try:
        await admin.fetchval("SELECT pg_terminate_backend($1, $2)", pid, TERMINATION_WAIT_MS)
    finally:
        await admin.close()


@contextmanager
def backend_ended_before_the_orders_commit(engine: AsyncEngine) -> Iterator[list[int]]:
    """Fault injection on the real engine: the first keyed order's backend is terminated
    between its last statement and COMMIT. Yields the pids ended."""
    ended: list[int] = []

    def note_reserving(connection: Connection, _: object, statement: str, *__: object) -> None:
        # The order's transaction opens with its first stock reservation, through SQLAlchemy (the
        # statements after it go to asyncpg directly): its COMMIT follows the settlement.
        if statement.startswith("UPDATE products SET stock"):
            connection.info["order_reserving"] = True

    def end_backend(connection: Connection) -> None:
        if not connection.info.pop("order_reserving", False) or ended:
            return
        driver: asyncpg.Connection = connection.connection.driver_connection  # type: ignore[assignment]
        pid = driver.get_server_pid()
        ended.append(pid)
        # This event cannot await: the kill runs on a loop of its own, in a thread, and returns
        # once the backend is gone. COMMIT then finds the connection closed.
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, kill_backend(pid)).result()

    sync_engine = engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", note_reserving)
    event.listen(sync_engine, "commit", end_backend)
    try:
        yield ended
    finally:
        event.remove(sync_engine, "before_cursor_execute", note_reserving)
        event.remove(sync_engine, "commit", end_backend)


async def test_a_connection_lost_at_the_orders_commit_costs_one_503_and_the_retry_orders_once(
    make_shop: ShopFactory,
) -> None:
    shop, customer, product = await shop_with_a_product(make_shop, stock=10)
    headers = keyed(customer, str(uuid.uuid4()))
    with backend_ended_before_the_orders_commit(shop.app.state.engine) as ended:
        lost = await shop.client.post(ORDERS, json=placement(product["id"]), headers=headers)
    assert len(ended) == 1
    assert_problem(lost, 503, "service_unavailable")
    assert lost.headers["retry-after"] == "1"

    retried = await shop.client.post(ORDERS, json=placement(product["id"]), headers=headers)
    assert retried.status_code == 201, retried.text
    replayed = await shop.client.post(ORDERS, json=placement(product["id"]), headers=headers)
    assert replayed.json()["id"] == retried.json()["id"]
    async with sessions(shop)() as session:
        count = await session.scalar(
            select(func.count()).select_from(Order).where(Order.customer_id == customer.id)
        )
    assert count == 1


class Traffic:
    """Clients reading and placing keyed orders, retrying a placement after each 503."""

    def __init__(self, shop: Shop, customer: Account, product_id: str) -> None:
        self.shop = shop
        self.customer = customer
        self.product_id = product_id
        self.failures: list[httpx2.Response] = []
        self.created: dict[str, str] = {}  # Idempotency-Key -> order id

    def _failed(self, response: httpx2.Response) -> None:
        self.failures.append(response)

    async def read(self) -> None:
        for url in (f"{PRODUCTS}/{self.product_id}", ORDERS):
            response = await self.shop.client.get(url, headers=self.customer.headers)
            if response.status_code != 200:
                self._failed(response)

    async def place(self, key: str) -> None:
        while True:
            response = await self.shop.client.post(
                ORDERS, json=placement(self.product_id), headers=keyed(self.customer, key)
            )
            if response.status_code == 201:
                self.created[key] = response.json()["id"]
                return
            self._failed(response)
            if response.status_code != 503:
                return  # not an outage answer: the test reports it, retrying would only wait
            await asyncio.sleep(0.05)

    async def client(self, placements: int) -> None:
        for _ in range(placements):
            await self.read()
            await self.place(str(uuid.uuid4()))


async def test_kills_under_traffic_cost_503s_and_no_duplicate_order(
    make_shop: ShopFactory, database_url: str
) -> None:
    shop, customer, product = await shop_with_a_product(make_shop, stock=1000)
    traffic = Traffic(shop, customer, product["id"])
    clients = [asyncio.create_task(traffic.client(PLACEMENTS_PER_CLIENT)) for _ in range(CLIENTS)]

    async def kill_repeatedly() -> None:
        for _ in range(KILLS):
            await kill_backends(database_url)
            await asyncio.sleep(0.1)

    # A bound on the whole run, so a hung request fails the test instead of stalling the suite.
    await asyncio.wait_for(asyncio.gather(kill_repeatedly(), *clients), WAIT_LIMIT_SECONDS)

    for response in traffic.failures:
        print(
            "FAIL",
            response.status_code,
            response.request.method,
            response.request.url.path,
            response.request.headers.get("idempotency-key"),
            response.text[:80],
        )
    for response in traffic.failures:
        assert_problem(response, 503, "service_unavailable")
        assert response.headers["retry-after"] == "1"
    assert len(traffic.created) == CLIENTS * PLACEMENTS_PER_CLIENT
    assert await one_per_endpoint(shop, customer, product["id"]) == [200, 200, 201]
    ready = await shop.client.get("/health/ready")
    assert (ready.status_code, ready.json()["status"]) == (200, "ok")
    async with sessions(shop)() as session:
        stored = set(
            await session.scalars(select(Order.id).where(Order.customer_id == customer.id))
        )
        count = await session.scalar(
            select(func.count()).select_from(Order).where(Order.customer_id == customer.id)
        )
    placed = {uuid.UUID(order_id) for order_id in traffic.created.values()}
    # Every 201 is stored, and the extra one is one_per_endpoint's: no retry made a second.
    assert placed <= stored
    assert count == len(placed) + 1
    # One unit per stored order: no lost transaction kept or took stock.
    assert await stock_of(shop, product["id"]) == 1000 - count
