"""Issue 8's black-box check: `serve --workers 2` on PostgreSQL and a Redis of the test's own, with
customers reading and ordering all along while Redis is stopped and restarted and every database
connection is killed. Nothing but a 503 problem may fail, nothing hangs, and every order key
ends in exactly one order."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import func, select

from order_api.orders.models import Order
from order_api.platform.db import create_engine, create_sessions
from order_api.products.models import Product
from tests.accounts import bearer
from tests.operations.test_database_faults import kill_backends
from tests.processes import ADMIN, empty_database, migrate_and_create_admin, production_env
from tests.redis_server import RedisProcess, own_redis
from tests.stream.test_two_processes import Person, client_of, log_in, register
from tests.support import make_settings
from tests.test_cli import RunningServer, running_server
from tests.waiting import wait_until

CUSTOMERS = 3
STOCK = 10_000
ORDERS_PER_PHASE = 6  # orders every customer places between two faults


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    with own_redis() as server:
        yield server


@dataclass
class Traffic:
    """What the customers saw: every status, and each key's order once it was placed."""

    server: RunningServer
    product_id: str
    statuses: Counter[int] = field(default_factory=Counter)
    placed: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def record(self, response: httpx2.Response) -> None:
        self.statuses[response.status_code] += 1
        if response.status_code >= 500 and not (
            response.status_code == 503
            and response.headers.get("content-type") == "application/problem+json"
            and response.json()["code"] == "service_unavailable"
            and "retry-after" in response.headers
        ):
            self.problems.append(f"{response.status_code} {response.text[:200]}")

    async def order_once(self, customer: Person) -> None:
        """One order under a fresh key, retried with that key until it is placed."""
        key = str(uuid.uuid4())
        body = {
            "items": [{"product_id": self.product_id, "quantity": 1}],
            "payment_method_id": "pm",
        }
        headers = {**bearer(customer.token), "Idempotency-Key": key}
        while key not in self.placed:
            async with client_of(self.server) as client:
                await client.get(f"/api/v1/products/{self.product_id}")
                response = await client.post("/api/v1/orders", json=body, headers=headers)
                self.record(response)
                self.record(await client.get("/api/v1/orders", headers=bearer(customer.token)))
            if response.status_code == 201:
                self.placed[key] = response.json()["id"]
            else:
                # Unanswered (503), or its key still held by the attempt a fault cut short (409).
                assert response.status_code in {409, 503}, response.text
                await asyncio.sleep(0.2)

    async def progress(self) -> None:
        """Until one more order is placed: the fault then lands on traffic under way."""
        placed = len(self.placed)
        await wait_until(lambda: len(self.placed) > placed, "orders under way")

    async def phase(self, customers: list[Person]) -> None:
        async def customer_orders(customer: Person) -> None:
            for _ in range(ORDERS_PER_PHASE):
                await self.order_once(customer)

        await asyncio.gather(*(customer_orders(customer) for customer in customers))


async def readiness(server: RunningServer) -> list[str]:
    """Both processes' readiness: new connections, so the kernel asks either process."""
    states = []
    for _ in range(6):
        async with client_of(server) as client:
            response = await client.get("/health/ready")
            assert response.status_code == 200, response.text
            states.append(response.json()["status"])
    return states


async def test_redis_and_database_faults_under_traffic(
    tmp_path: Path, postgres_database: str, redis_server: RedisProcess, redis_prefix: str
) -> None:
    await redis_server.start_and_wait()
    env = production_env(
        postgres_database,
        redis_server.url,
        redis_prefix,
        REDIS_TIMEOUT_SECONDS="0.5",
        # The limits are not under test here: three customers order far faster than a person.
        RATE_LIMIT_DEFAULT="10000/minute",
        RATE_LIMIT_ORDERS_PER_USER="1000/minute",
        JOB_LEASE_SECONDS="2",
        OUTBOX_POLL_SECONDS="0.2",
    )
    migrate_and_create_admin(tmp_path, env)
    try:
        with running_server(tmp_path, "--workers", "2", **env) as server:
            async with client_of(server) as client:
                admin = await log_in(client, *ADMIN)
                product = await client.post(
                    "/api/v1/products",
                    json={"name": "Steady", "price_cents": 100, "stock": STOCK},
                    headers=bearer(admin),
                )
                assert product.status_code == 201, product.text
                customers = [await register(client, admin) for _ in range(CUSTOMERS)]
            traffic = Traffic(server, product.json()["id"])
            await traffic.phase(customers)

            redis_server.stop()
            outage = asyncio.ensure_future(traffic.phase(customers))
            assert set(await readiness(server)) == {"degraded"}
            await outage

            await redis_server.start_and_wait()

            async def both_ready() -> bool:
                return set(await readiness(server)) == {"ok"}

            await wait_until(both_ready, "both processes to see Redis again")

            for _ in range(2):
                under_way = asyncio.ensure_future(traffic.phase(customers))
                await traffic.progress()
                assert await kill_backends(postgres_database) >= 1
                await under_way
            assert set(await readiness(server)) == {"ok"}
            server.stop()
        assert server.process.returncode in {0, -signal.SIGTERM}

        settings = make_settings(postgres_database, tmp_path)
        engine = create_engine(settings)
        async with create_sessions(engine, settings)() as session:
            orders = await session.scalar(select(func.count()).select_from(Order))
            stock = await session.scalar(select(Product.stock))
        await engine.dispose()
    finally:
        await empty_database(postgres_database, tmp_path)
    assert traffic.problems == []
    expected = CUSTOMERS * ORDERS_PER_PHASE * 4
    assert len(traffic.placed) == expected
    assert len(set(traffic.placed.values())) == expected
    assert (orders, stock) == (expected, STOCK - expected)
