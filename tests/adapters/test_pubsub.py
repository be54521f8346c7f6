"""Pub-sub: what one side publishes, every subscriber of the channel receives; order events too."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio
import structlog
from prometheus_client import REGISTRY
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from order_api.orders.events import ORDERS_CHANNEL
from order_api.platform.adapters import InProcessPubSub, PubSub, RedisPubSub
from order_api.users.models import Role
from tests.accounts import Shop
from tests.redis_server import RedisProcess, own_redis
from tests.waiting import wait_until

WAIT_SECONDS = 10  # a generous bound for a message to arrive, not a speed assertion


async def next_message(messages: AsyncIterator[bytes]) -> bytes:
    return await asyncio.wait_for(anext(messages), WAIT_SECONDS)


async def assert_fan_out(pubsub: PubSub) -> None:
    async with (
        pubsub.subscribe("news") as first,
        pubsub.subscribe("news") as second,
        pubsub.subscribe("other") as other,
    ):
        await pubsub.publish("news", b"hello")
        assert await next_message(first) == b"hello"
        assert await next_message(second) == b"hello"
        with pytest.raises(TimeoutError):  # nothing crosses channels
            await asyncio.wait_for(anext(other), 0.2)


async def test_in_process_pubsub_fans_out_per_channel() -> None:
    await assert_fan_out(InProcessPubSub())


async def test_redis_pubsub_fans_out_per_channel(redis_url: str, redis_prefix: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        await assert_fan_out(RedisPubSub(client, redis_prefix))
    finally:
        await client.aclose()


async def test_redis_pubsub_refuses_to_publish_when_redis_is_down() -> None:
    # The outbox handler lets this raise, so the event is retried instead of lost.
    client = redis.asyncio.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises((RedisConnectionError, OSError)):
            await RedisPubSub(client, "order-api-test").publish("orders", b"x")
    finally:
        await client.aclose()


async def test_placing_and_moving_an_order_publishes_its_events(shop: Shop) -> None:
    staff = await shop.account(Role.STAFF)
    customer = await shop.account()
    product = await shop.client.post(
        "/api/v1/products",
        json={"name": "Beans", "price_cents": 500, "stock": 3},
        headers=staff.headers,
    )
    async with shop.app.state.pubsub.subscribe(ORDERS_CHANNEL) as events:
        placed = await shop.client.post(
            "/api/v1/orders",
            json={
                "items": [{"product_id": product.json()["id"], "quantity": 1}],
                "payment_method_id": "pm_1",
            },
            headers=customer.headers,
        )
        order_id = placed.json()["id"]
        paid = await shop.client.post(
            f"/api/v1/orders/{order_id}/status", json={"status": "PAID"}, headers=staff.headers
        )
        assert paid.status_code == 200
        received = [json.loads(await next_message(events)) for _ in range(2)]
    # Jobs run concurrently, so events may arrive out of order; `at` orders them.
    created, moved = sorted(received, key=lambda event: str(event["at"]))
    assert created["order_id"] == moved["order_id"] == order_id
    assert created["customer_id"] == str(customer.id)
    assert (created["previous_status"], created["status"]) == (None, "PENDING")
    assert (moved["previous_status"], moved["status"]) == ("PENDING", "PAID")


@pytest.fixture
def restartable_redis() -> Iterator[RedisProcess]:
    with own_redis() as server:
        yield server


def quick_client(url: str) -> redis.asyncio.Redis:
    """Timeouts as the service sets them: a hung server must not hang a connect or a read."""
    return redis.asyncio.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)


@asynccontextmanager
async def collected(messages: AsyncIterator[bytes]) -> AsyncIterator[asyncio.Queue[bytes]]:
    """Reads the subscription in a task: a wait that times out must not close the iterator."""
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def read() -> None:
        async for message in messages:
            received.put_nowait(message)

    reader = asyncio.create_task(read())
    try:
        yield received
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def publish_until_received(
    pubsub: PubSub, received: asyncio.Queue[bytes], message: bytes
) -> None:
    """Publishing is fire-and-forget: publish again until the returning subscriber gets it."""

    async def delivered() -> bool:
        with contextlib.suppress(RedisError, OSError):  # the publisher's reconnect may lag too
            await pubsub.publish("news", message)
        try:
            return await asyncio.wait_for(received.get(), 0.2) == message
        except TimeoutError:
            return False

    await wait_until(delivered, f"{message!r} to reach the resubscribed reader", WAIT_SECONDS * 2)


def reconnects() -> float:
    return REGISTRY.get_sample_value("order_api_pubsub_reconnects_total") or 0.0


async def test_a_redis_subscription_keeps_yielding_after_redis_restarts(
    restartable_redis: RedisProcess,
) -> None:
    await restartable_redis.start_and_wait()
    client = quick_client(restartable_redis.url)
    pubsub = RedisPubSub(client, "order-api-test")
    try:
        async with pubsub.subscribe("news") as messages, collected(messages) as received:
            await pubsub.publish("news", b"before")
            assert await asyncio.wait_for(received.get(), WAIT_SECONDS) == b"before"
            restartable_redis.stop()
            await restartable_redis.start_and_wait()
            await publish_until_received(pubsub, received, b"after")
    finally:
        await client.aclose()


async def test_a_hung_redis_is_noticed_and_the_subscription_comes_back(
    restartable_redis: RedisProcess,
) -> None:
    await restartable_redis.start_and_wait()
    client = quick_client(restartable_redis.url)
    pubsub = RedisPubSub(client, "order-api-test", ping_seconds=0.2)
    reconnects_before = reconnects()
    try:
        with structlog.testing.capture_logs() as logs:
            async with pubsub.subscribe("news") as messages, collected(messages) as received:
                await pubsub.publish("news", b"before")
                assert await asyncio.wait_for(received.get(), WAIT_SECONDS) == b"before"
                restartable_redis.pause()
                try:
                    # A hung server sends no RST: only the unanswered pings tell.
                    await wait_until(
                        lambda: any(log["event"] == "pubsub_connection_lost" for log in logs),
                        "the subscription to give up on the silent server",
                    )
                finally:
                    restartable_redis.resume()
                await publish_until_received(pubsub, received, b"after")
    finally:
        await client.aclose()
    assert reconnects() > reconnects_before
