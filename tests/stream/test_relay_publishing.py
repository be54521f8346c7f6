"""Order events go from the outbox to the pub-sub by each API process's relay, with no worker
running: the job queue (and whatever e-mails wait in it) is not on their path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from order_api.jobs.models import OutboxMessage, OutboxStatus
from order_api.jobs.relay import OutboxRelay
from order_api.orders.events import ORDER_EVENT_KIND
from order_api.users.models import Role
from tests.accounts import Account
from tests.catalogue import create_product, order
from tests.redis_server import RedisProcess, own_redis
from tests.streams import (
    HEARTBEAT,
    LiveShop,
    LiveShopFactory,
    frames_until_closed,
    next_event,
    next_frame,
    open_stream,
)
from tests.waiting import wait_until

pytestmark = pytest.mark.only_backend("postgresql")  # Redis means production: PostgreSQL

# Quick heartbeats, so "nothing more came" is two beats of silence; orders without a rate limit.
QUICK: dict[str, Any] = {"ws_heartbeat_seconds": 0.5, "rate_limit_orders_per_user": "1000/minute"}
ORDERS_AT_ONCE = 40
REFUSED_AT_ONCE = 5
SILENT_BEATS_BEFORE_GIVING_UP = 40  # 20 s at QUICK's heartbeat


def transition(event: dict[str, Any]) -> tuple[str, str | None, str]:
    return event["order_id"], event["previous_status"], event["status"]


def delays_observed() -> float:
    return REGISTRY.get_sample_value("order_api_order_event_delay_seconds_count") or 0.0


async def place(shop: LiveShop, customer: Account, product_id: str) -> str:
    placed = await order(shop, customer.headers, [(product_id, 1)])
    assert placed.status_code == 201, placed.text
    order_id: str = placed.json()["id"]
    return order_id


async def event_rows(shop: LiveShop) -> list[OutboxStatus]:
    async with shop.app.state.sessionmaker() as session:
        rows = await session.scalars(
            select(OutboxMessage.status)
            .where(OutboxMessage.kind == ORDER_EVENT_KIND)
            .order_by(OutboxMessage.created_at)
        )
        return list(rows)


async def events_done(shop: LiveShop, count: int) -> bool:
    """Marked after the publish, so a frame can arrive just before its row is done."""
    return await event_rows(shop) == [OutboxStatus.DONE] * count


async def events_until_quiet(websocket: Any, expected: int) -> list[dict[str, Any]]:
    """Every event frame until `expected` have come and then two heartbeats in a row: nothing
    more is on its way. A busy machine may delay the relay by seconds, so a shortfall waits up
    to `SILENT_BEATS_BEFORE_GIVING_UP` quiet beats; a duplicate still shows as a frame too many."""
    events: list[dict[str, Any]] = []
    beats = 0
    while beats < (2 if len(events) >= expected else SILENT_BEATS_BEFORE_GIVING_UP):
        frame = await next_frame(websocket)
        if frame == HEARTBEAT:
            beats += 1
        else:
            beats = 0
            events.append(frame)
    return events


async def test_a_creation_event_reaches_a_staff_socket_with_no_worker_running(
    make_live_shop: LiveShopFactory, redis_url: str, redis_prefix: str
) -> None:
    shop = await make_live_shop(redis_url=redis_url, redis_prefix=redis_prefix, **QUICK)
    staff, customer = await shop.account(Role.STAFF), await shop.account()
    product = await create_product(shop, staff.headers, stock=5)
    async with open_stream(shop.stream_url(staff.access_token)) as board:
        assert await next_frame(board) == HEARTBEAT  # registered with the hub
        order_id = await place(shop, customer, product["id"])
        assert transition(await next_event(board)) == (order_id, None, "PENDING")
    await wait_until(lambda: events_done(shop, 1), "the relay to mark the event done")


async def test_orders_placed_at_once_on_two_processes_give_each_socket_one_frame_each(
    make_live_shop: LiveShopFactory, redis_url: str, redis_prefix: str
) -> None:
    shops = [
        await make_live_shop(redis_url=redis_url, redis_prefix=redis_prefix, **QUICK)
        for _ in range(2)
    ]
    staff = await shops[0].account(Role.STAFF)
    customers = [await shops[0].account() for _ in range(4)]
    product = await create_product(shops[0], staff.headers, stock=ORDERS_AT_ONCE)
    observed_before = delays_observed()
    # Boards that take every frame as it comes (no receive queue bound), so they answer each
    # ping while the orders are placed, as a browser's board does.
    async with (
        open_stream(shops[0].stream_url(staff.access_token), max_queue=None) as board_a,
        open_stream(shops[1].stream_url(staff.access_token), max_queue=None) as board_b,
    ):
        for board in (board_a, board_b):
            assert await next_frame(board) == HEARTBEAT

        async def attempt(number: int) -> tuple[int, str]:
            shop, customer = shops[number % 2], customers[number % len(customers)]
            placed = await order(shop, customer.headers, [(product["id"], 1)])
            return placed.status_code, placed.json().get("id", "")

        # More orders than stock: the refused ones roll back, and with them their events.
        outcomes = await asyncio.gather(
            *(attempt(number) for number in range(ORDERS_AT_ONCE + REFUSED_AT_ONCE))
        )
        placed = {order_id for status, order_id in outcomes if status == 201}
        assert len(placed) == ORDERS_AT_ONCE
        assert sorted(status for status, _ in outcomes).count(409) == REFUSED_AT_ONCE

        for board in (board_a, board_b):
            events = await events_until_quiet(board, ORDERS_AT_ONCE)
            assert len(events) == ORDERS_AT_ONCE
            assert {transition(event) for event in events} == {
                (order_id, None, "PENDING") for order_id in placed
            }
    await wait_until(lambda: events_done(shops[0], ORDERS_AT_ONCE), "the relays to mark them done")
    # Each process's hub measured the age of every event it dispatched.
    assert delays_observed() - observed_before == 2 * ORDERS_AT_ONCE


@pytest.fixture
def restartable_redis() -> Iterator[RedisProcess]:
    with own_redis() as server:
        yield server


async def passes_until_delivered(relay: OutboxRelay) -> int:
    """Relay passes until one delivers something (a row given back is due after a sweep)."""
    delivered = 0

    async def one_pass() -> bool:
        nonlocal delivered
        delivered = await relay.relay_due()
        return delivered > 0

    await wait_until(one_pass, "a relay pass to deliver")
    return delivered


async def test_an_event_raised_while_redis_is_down_is_published_once_it_returns(
    make_live_shop: LiveShopFactory, restartable_redis: RedisProcess
) -> None:
    await restartable_redis.start_and_wait()
    shop = await make_live_shop(redis_url=restartable_redis.url, outbox_poll_seconds=0.2, **QUICK)
    # The process's relay, its loop stopped: each pass below is the test's.
    relay: OutboxRelay = shop.app.state.background.relay
    await relay.stop()
    staff, customer = await shop.account(Role.STAFF), await shop.account()
    product = await create_product(shop, staff.headers, stock=5)
    async with open_stream(shop.stream_url(staff.access_token)) as board:
        assert await next_frame(board) == HEARTBEAT
        order_id = await place(shop, customer, product["id"])
        await passes_until_delivered(relay)
        assert transition(await next_event(board)) == (order_id, None, "PENDING")

        restartable_redis.stop()
        moved = await shop.client.post(
            f"/api/v1/orders/{order_id}/status", json={"status": "PAID"}, headers=staff.headers
        )
        assert moved.status_code == 200, moved.text
        assert await relay.relay_due() == 0  # nothing reaches Redis: the event waits
        assert await event_rows(shop) == [OutboxStatus.DONE, OutboxStatus.PENDING]
        await restartable_redis.start_and_wait()
        _, code = await frames_until_closed(board)
    assert code == 1012  # the hub is subscribed again
    async with open_stream(shop.stream_url(staff.access_token)) as board:
        assert await next_frame(board) == HEARTBEAT
        await passes_until_delivered(relay)
        assert [transition(e) for e in await events_until_quiet(board, 1)] == [
            (order_id, "PENDING", "PAID")
        ]
    assert await event_rows(shop) == [OutboxStatus.DONE] * 2
