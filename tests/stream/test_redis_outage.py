"""The order stream when Redis fails: a restart, events raised meanwhile, garbage on the channel."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio
from prometheus_client import REGISTRY
from sqlalchemy import select

from order_api.jobs.models import OutboxMessage, OutboxStatus
from order_api.orders.events import ORDER_EVENT_KIND, ORDERS_CHANNEL
from order_api.users.models import Role
from tests.accounts import Account
from tests.catalogue import create_product, order
from tests.jobs.test_worker import Workers
from tests.redis_server import RedisProcess, own_redis
from tests.streams import (
    LiveShop,
    LiveShopFactory,
    frames_until_closed,
    next_event,
    open_stream,
)
from tests.support import TEST_SECRET_KEY
from tests.test_cli import command_env
from tests.waiting import wait_until

pytestmark = pytest.mark.only_backend("postgresql")  # Redis means production: PostgreSQL

# Shared by the API and its worker: quick heartbeats, short leases, quick retries.
FAST_STREAM: dict[str, Any] = {
    "ws_heartbeat_seconds": 1.0,
    "job_lease_seconds": 2.0,
    "job_retry_base_seconds": 0.2,
    "job_retry_max_seconds": 1.0,
    "outbox_poll_seconds": 0.2,
}

WorkersFor = Callable[[str, str], Workers]


@pytest.fixture
def restartable_redis() -> Iterator[RedisProcess]:
    with own_redis() as server:
        yield server


@pytest.fixture
def workers_for(database_url: str, tmp_path: Path) -> Iterator[WorkersFor]:
    """`order-api worker` processes on the test's database and a given Redis, killed at the end."""
    pools: list[Workers] = []

    def build(redis_url: str, redis_prefix: str) -> Workers:
        settings = {name.upper(): str(value) for name, value in FAST_STREAM.items()}
        env = command_env(
            tmp_path,
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            REDIS_PREFIX=redis_prefix,
            SECRET_KEY=TEST_SECRET_KEY,
            ENVIRONMENT="test",
            **settings,
        )
        pools.append(Workers(env, tmp_path))
        return pools[-1]

    yield build
    for pool in pools:
        pool.stop_all()


def counted(metric: str) -> float:
    return REGISTRY.get_sample_value(metric) or 0.0


def reconnects() -> float:
    return counted("order_api_pubsub_reconnects_total")


async def placed_order(shop: LiveShop, customer: Account) -> str:
    staff = await shop.account(Role.STAFF)
    product = await create_product(shop, staff.headers, stock=5)
    placed = await order(shop, customer.headers, [(product["id"], 1)])
    assert placed.status_code == 201, placed.text
    order_id: str = placed.json()["id"]
    return order_id


async def move(shop: LiveShop, order_id: str, status: str) -> None:
    staff = await shop.account(Role.STAFF)
    response = await shop.client.post(
        f"/api/v1/orders/{order_id}/status", json={"status": status}, headers=staff.headers
    )
    assert response.status_code == 200, response.text


def transition(event: dict[str, Any]) -> tuple[str, str | None, str]:
    return event["order_id"], event["previous_status"], event["status"]


def workers_alive(workers: Workers) -> bool:
    return all(process.poll() is None for process in workers.processes)


async def order_event_rows_published(shop: LiveShop) -> bool:
    async with shop.app.state.sessionmaker() as session:
        statuses = await session.scalars(
            select(OutboxMessage.status).where(OutboxMessage.kind == ORDER_EVENT_KIND)
        )
        return all(status == OutboxStatus.DONE for status in statuses)


async def shop_with_worker(
    redis_server: RedisProcess, make_live_shop: LiveShopFactory, workers_for: WorkersFor
) -> tuple[LiveShop, Workers, Account]:
    """A served API and one worker on the test's own Redis, and a customer of that shop."""
    await redis_server.start_and_wait()
    shop = await make_live_shop(redis_url=redis_server.url, **FAST_STREAM)
    workers = workers_for(redis_server.url, "order-api")
    workers.start()
    return shop, workers, await shop.account()


async def test_the_hub_outlives_a_redis_restart_and_tells_its_sockets(
    restartable_redis: RedisProcess, make_live_shop: LiveShopFactory, workers_for: WorkersFor
) -> None:
    shop, workers, customer = await shop_with_worker(restartable_redis, make_live_shop, workers_for)
    url = shop.stream_url(customer.access_token, customer.id)
    async with open_stream(url) as websocket:
        order_id = await placed_order(shop, customer)
        assert transition(await next_event(websocket)) == (order_id, None, "PENDING")
        reconnects_before = reconnects()
        restartable_redis.stop()
        await restartable_redis.start_and_wait()
        # Events may have gone by while the hub was away: its sockets are told to re-read.
        _, code = await frames_until_closed(websocket)
    assert code == 1012
    assert reconnects() > reconnects_before
    async with open_stream(url) as websocket:
        await move(shop, order_id, "PAID")
        assert transition(await next_event(websocket)) == (order_id, "PENDING", "PAID")
    assert workers_alive(workers), "a worker died with the Redis restart"


async def test_an_event_raised_while_redis_is_down_is_published_when_it_returns(
    restartable_redis: RedisProcess, make_live_shop: LiveShopFactory, workers_for: WorkersFor
) -> None:
    shop, workers, customer = await shop_with_worker(restartable_redis, make_live_shop, workers_for)
    url = shop.stream_url(customer.access_token, customer.id)
    async with open_stream(url) as websocket:
        order_id = await placed_order(shop, customer)
        assert transition(await next_event(websocket)) == (order_id, None, "PENDING")
        restartable_redis.stop()
        await move(shop, order_id, "PAID")  # the API serves on; the event waits in the outbox
        assert not await order_event_rows_published(shop)
        await restartable_redis.start_and_wait()
        _, code = await frames_until_closed(websocket)
    assert code == 1012
    await wait_until(lambda: order_event_rows_published(shop), "the waiting event to go out")
    # What a reconnecting client does (SPEC §5.10): re-read the history, and find the move.
    history = await shop.client.get(f"/api/v1/orders/{order_id}/events", headers=customer.headers)
    assert [e["to_status"] for e in history.json()] == ["PENDING", "PAID"]
    assert workers_alive(workers), "a worker died with the Redis restart"


def event_for(order_id: str, customer_id: uuid.UUID | str, **extra: Any) -> bytes:
    event = {
        "order_id": order_id,
        "customer_id": str(customer_id),
        "status": "SHIPPED",
        "previous_status": "PAID",
        "at": datetime.now(UTC).isoformat(),
        **extra,
    }
    return json.dumps(event).encode()


async def test_bad_messages_on_the_channel_are_dropped_and_the_socket_carries_on(
    make_live_shop: LiveShopFactory, workers_for: WorkersFor, redis_url: str, redis_prefix: str
) -> None:
    shop = await make_live_shop(redis_url=redis_url, redis_prefix=redis_prefix, **FAST_STREAM)
    workers_for(redis_url, redis_prefix).start()
    customer = await shop.account()
    async with open_stream(shop.stream_url(customer.access_token, customer.id)) as websocket:
        order_id = await placed_order(shop, customer)
        assert transition(await next_event(websocket)) == (order_id, None, "PENDING")
        dropped_before = counted("order_api_stream_messages_dropped_total")

        garbage = [
            b"not json",
            b"{}",
            event_for(order_id, customer.id, padding="x" * 1024 * 1024),  # an event, but 1 MB
        ]
        someone_elses = event_for(str(uuid.uuid4()), uuid.uuid4())
        publisher = redis.asyncio.Redis.from_url(redis_url)
        try:
            for message in [*garbage, someone_elses]:
                await publisher.publish(f"{redis_prefix}:events:{ORDERS_CHANNEL}", message)
        finally:
            await publisher.aclose()
        await move(shop, order_id, "PAID")

        # One subscription delivers in order: the real event comes after everything above.
        assert transition(await next_event(websocket)) == (order_id, "PENDING", "PAID")
    assert counted("order_api_stream_messages_dropped_total") - dropped_before == len(garbage)
