"""Redis stopped or hung under a running API (reliability rows FLT-05, FLT-06, FLT-07): the API
keeps serving, readiness says `degraded`, general limits fail open (counted), login limits count
in-process, and everything is back on Redis once it returns. Events raised meanwhile are covered
by tests/stream/test_redis_outage.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio
from sqlalchemy import select

from order_api.jobs.models import OutboxMessage, OutboxStatus
from order_api.platform.adapters import connect_redis
from order_api.platform.limits import rules as rate_limits
from order_api.platform.limits.window_counter import KNOWN_FOR_SECONDS
from order_api.users.models import Role
from tests.accounts import Shop, ShopFactory
from tests.adapters.test_redis_connection import SilentServer, silent_redis
from tests.catalogue import create_product, order
from tests.operations.test_metrics import Samples, scrape, value
from tests.redis_server import RedisProcess, own_redis
from tests.support import make_settings
from tests.waiting import wait_until

__all__ = ["silent_redis"]  # the fixture, shared with tests/adapters

pytestmark = pytest.mark.only_backend("postgresql")  # Redis means production: PostgreSQL

LIMITS = {
    "rate_limit_enabled": True,
    "rate_limit_default": "1000/minute",
    "rate_limit_login_per_account": "3/minute",
    "rate_limit_orders_per_user": "1000/minute",
    "redis_timeout_seconds": 0.5,
    # A hand-over that failed in the outage is retried once its short lease runs out.
    "job_lease_seconds": 2.0,
    "outbox_poll_seconds": 0.2,
}


@pytest.fixture
def redis_server() -> Iterator[RedisProcess]:
    with own_redis() as server:
        yield server


async def limit_keys(server: RedisProcess) -> list[bytes]:
    client = redis.asyncio.Redis.from_url(server.url)
    try:
        return [key async for key in client.scan_iter(match="*:limits:*")]
    finally:
        await client.aclose()


def grown(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def wrong_logins(shop: Shop, email: str, count: int) -> list[int]:
    return [(await shop.log_in(email, "wrong guess")).status_code for _ in range(count)]


async def test_a_stopped_redis_degrades_and_limits_fall_back(
    make_shop: ShopFactory, redis_server: RedisProcess, caplog: pytest.LogCaptureFixture
) -> None:
    await redis_server.start_and_wait()
    shop = await make_shop(redis_url=redis_server.url, **LIMITS)
    staff = await shop.account(Role.STAFF)
    customer = await shop.account()
    product = await create_product(shop, staff.headers, stock=10)
    assert await limit_keys(redis_server)

    redis_server.stop()
    # Until then an address's count known from Redis still answers without it (batched_counting).
    await asyncio.sleep(KNOWN_FOR_SECONDS)
    before = await scrape(shop.client)
    ready = await shop.client.get("/health/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    for _ in range(5):
        assert (await shop.client.get(f"/api/v1/products/{product['id']}")).status_code == 200
    placed = await order(shop, customer.headers, [(product["id"], 1)])
    assert placed.status_code == 201, placed.text
    # Brute force is never unlimited: this process counts the login attempts itself.
    victim = await shop.create_user()
    assert await wrong_logins(shop, victim.email, 4) == [401, 401, 401, 429]
    after = await scrape(shop.client)

    fail_opens = "order_api_rate_limit_fail_opens_total"
    fallbacks = "order_api_rate_limit_fallbacks_total"
    # Every limited request of the outage: 5 reads, 1 order, 4 logins.
    assert grown(before, after, fail_opens, limit="default") == 10
    assert grown(before, after, fail_opens, limit="orders_user") == 1
    assert grown(before, after, fallbacks, limit="login_account") == 4
    assert grown(before, after, fallbacks, limit="login_ip") == 4
    warnings = [r for r in caplog.records if "rate_limit_storage_unreachable" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not once per request

    await redis_server.start_and_wait()

    async def ready_again() -> bool:
        body: dict[str, object] = (await shop.client.get("/health/ready")).json()
        return body["status"] == "ok"

    await wait_until(ready_again, "readiness to see Redis again")

    async def counting_in_redis_again() -> bool:
        await shop.client.get("/api/v1/products")
        return bool(await limit_keys(redis_server))

    await wait_until(
        counting_in_redis_again, f"limits back on Redis ({rate_limits.STORAGE_RETRY_SECONDS} s)"
    )
    order_id = placed.json()["id"]

    async def handed_over() -> bool:
        async with shop.app.state.sessionmaker() as session:
            statuses = await session.scalars(
                select(OutboxMessage.status).where(
                    OutboxMessage.payload["order_id"].as_string() == order_id
                )
            )
            found = list(statuses)
        return bool(found) and OutboxStatus.PENDING not in found

    await wait_until(handed_over, "the outage's outbox rows to reach the queue")


async def test_a_hung_redis_costs_a_timeout_not_a_hang(
    make_shop: ShopFactory, redis_server: RedisProcess
) -> None:
    await redis_server.start_and_wait()
    shop = await make_shop(redis_url=redis_server.url, **LIMITS)
    user = await shop.create_user()
    redis_server.pause()
    try:
        # Each answer comes after at most the Redis timeout and its one retry, then the
        # storage is left alone: the login limits count in-process meanwhile.
        assert await wrong_logins(shop, user.email, 4) == [401, 401, 401, 429]
        assert (await shop.client.get("/health/ready")).json()["status"] == "degraded"
    finally:
        redis_server.resume()


async def test_a_hung_redis_is_probed_by_one_request_at_a_time(
    silent_redis: SilentServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rate_limits, "STORAGE_RETRY_SECONDS", 0.5)
    settings = make_settings(
        "sqlite+aiosqlite:///unused",
        tmp_path,
        rate_limit_enabled=True,
        redis_timeout_seconds=0.2,
        redis_url=f"redis://127.0.0.1:{silent_redis.port}/0",
    )
    client = connect_redis(str(settings.redis_url), settings)
    limits = rate_limits.RateLimits.from_settings(settings, client)
    try:
        await limits.check_login("192.0.2.1", "ada@example.com")
        assert silent_redis.connections == 2  # one call and its retry, then the circuit opens
        await asyncio.gather(*(limits.check_request("192.0.2.1") for _ in range(20)))
        assert silent_redis.connections == 2  # open: nobody waits on Redis
        await asyncio.sleep(0.6)
        await asyncio.gather(*(limits.check_request("192.0.2.1") for _ in range(20)))
        assert silent_redis.connections == 4  # one probe (and its retry); the others went on
    finally:
        await limits.aclose()
        await client.aclose()
