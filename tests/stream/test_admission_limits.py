"""How many order streams one process lets in: per user, per client address, and handshakes per
address and minute. Beyond any of them a socket is accepted and closed at once with 4429 (HTTP
429's twin), carrying no data frame, and counted in /metrics."""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import AsyncExitStack
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from order_api.orders.events import ORDERS_CHANNEL
from order_api.orders.stream import OrderStream
from order_api.users.models import Role
from tests.accounts import Account
from tests.streams import (
    HEARTBEAT,
    LiveShop,
    LiveShopFactory,
    event_for,
    next_event,
    next_frame,
    open_stream,
    refusal_code,
)
from tests.tokens import claims_for, mint
from tests.waiting import wait_until

TOO_MANY = 4429
# The handshake limit is off in the other tests (make_settings); these turn every limit on.
LIMITS_ON: dict[str, Any] = {"rate_limit_enabled": True, "ws_heartbeat_seconds": 0.2}


async def admitted_or_refused(url: str, sockets: AsyncExitStack) -> ClientConnection | int:
    """An admitted socket, kept open in `sockets` (its first frame is a heartbeat, the test shop
    beats fast), or the code it was closed with before any data frame."""
    websocket = await sockets.enter_async_context(open_stream(url))
    try:
        frame = await next_frame(websocket)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else -1  # -1: no close frame came at all
    assert frame == HEARTBEAT
    return websocket


def admitted(outcomes: list[ClientConnection | int]) -> list[ClientConnection]:
    return [outcome for outcome in outcomes if isinstance(outcome, ClientConnection)]


async def each_gets_an_event(
    shop: LiveShop, sockets: list[ClientConnection], customer: Account
) -> None:
    message = event_for(customer.id)
    await shop.app.state.pubsub.publish(ORDERS_CHANNEL, message)
    events = await asyncio.gather(*(next_event(websocket) for websocket in sockets))
    assert [event["order_id"] for event in events] == [json.loads(message)["order_id"]] * len(
        sockets
    )


async def sockets_forgotten(shop: LiveShop) -> None:
    hub: OrderStream = shop.app.state.order_stream
    await wait_until(lambda: not hub.watchers(), "the hub to forget the closed sockets")


async def test_the_eleventh_socket_of_one_user_is_refused_and_the_ten_keep_working(
    make_live_shop: LiveShopFactory,
) -> None:
    shop = await make_live_shop(ws_heartbeat_seconds=0.2)  # the default caps: 10 and 50
    customer = await shop.account()
    url = shop.stream_url(customer.access_token, customer.id)
    refused_before = await shop.closes(TOO_MANY)
    async with AsyncExitStack() as sockets:
        ten = admitted([await admitted_or_refused(url, sockets) for _ in range(10)])
        assert len(ten) == 10
        assert await refusal_code(url) == TOO_MANY
        assert await shop.closes(TOO_MANY) == refused_before + 1
        await each_gets_an_event(shop, ten, customer)
        # A cap on open sockets, not on sockets ever opened: one closed makes room for one.
        await ten.pop().close()
        hub: OrderStream = shop.app.state.order_stream
        await wait_until(lambda: len(hub.watchers()) == 9, "the closed socket's slot to free")
        again = await admitted_or_refused(url, sockets)
        assert isinstance(again, ClientConnection)
        assert await refusal_code(url) == TOO_MANY
        await each_gets_an_event(shop, [*ten, again], customer)
    assert await shop.closes(TOO_MANY) == refused_before + 2
    await sockets_forgotten(shop)


async def test_a_users_sockets_opened_at_once_are_admitted_exactly_up_to_the_cap(
    make_live_shop: LiveShopFactory,
) -> None:
    shop = await make_live_shop(ws_heartbeat_seconds=0.2, ws_max_sockets_per_user=3)
    staff, customer = await shop.account(Role.STAFF), await shop.account()
    refused_before = await shop.closes(TOO_MANY)
    async with AsyncExitStack() as sockets:
        # Staff's every-order stream and the customer streams it watches share one cap.
        urls = [shop.stream_url(staff.access_token)] * 4 + [
            shop.stream_url(staff.access_token, customer.id)
        ] * 4
        outcomes = await asyncio.gather(*(admitted_or_refused(url, sockets) for url in urls))
        assert len(admitted(outcomes)) == 3
        assert sorted(code for code in outcomes if isinstance(code, int)) == [TOO_MANY] * 5
        assert await shop.closes(TOO_MANY) == refused_before + 5
        # Another user is not held back by that one's cap.
        own = await admitted_or_refused(
            shop.stream_url(customer.access_token, customer.id), sockets
        )
        assert isinstance(own, ClientConnection)
    await sockets_forgotten(shop)


async def test_one_address_is_capped_across_its_users(make_live_shop: LiveShopFactory) -> None:
    shop = await make_live_shop(
        ws_heartbeat_seconds=0.2, ws_max_sockets_per_user=3, ws_max_sockets_per_address=4
    )
    first, second, third = [await shop.account() for _ in range(3)]

    def own_stream(account: Account) -> str:
        return shop.stream_url(account.access_token, account.id)

    refused_before = await shop.closes(TOO_MANY)
    async with AsyncExitStack() as sockets:
        firsts = admitted([await admitted_or_refused(own_stream(first), sockets) for _ in range(3)])
        seconds = admitted([await admitted_or_refused(own_stream(second), sockets)])
        assert (len(firsts), len(seconds)) == (3, 1)
        # Every user below their own cap of 3, but 127.0.0.1 holds its 4.
        assert await refusal_code(own_stream(second)) == TOO_MANY
        assert await refusal_code(own_stream(third)) == TOO_MANY
        assert await shop.closes(TOO_MANY) == refused_before + 2
        await each_gets_an_event(shop, firsts, first)
        await firsts.pop().close()
        hub: OrderStream = shop.app.state.order_stream
        await wait_until(lambda: len(hub.watchers()) == 3, "the closed socket's slot to free")
        thirds = await admitted_or_refused(own_stream(third), sockets)
        assert isinstance(thirds, ClientConnection)
        await each_gets_an_event(shop, [thirds], third)
    await sockets_forgotten(shop)


async def test_handshakes_beyond_the_rate_are_refused_4429_before_the_token(
    make_live_shop: LiveShopFactory,
) -> None:
    shop = await make_live_shop(**LIMITS_ON, rate_limit_websocket_per_ip="3/hour")
    customer = await shop.account()
    url = shop.stream_url(customer.access_token, customer.id)
    refused_before = await shop.closes(TOO_MANY)
    limited_before = await shop.scraped(
        "order_api_rate_limit_rejections_total", limit="websocket_ip"
    )
    async with AsyncExitStack() as sockets:
        outcomes = await asyncio.gather(*(admitted_or_refused(url, sockets) for _ in range(5)))
    assert len(admitted(outcomes)) == 3
    assert sorted(code for code in outcomes if isinstance(code, int)) == [TOO_MANY] * 2
    # Counted before anything else: a bad token past the rate is 4429, not 4401.
    assert await refusal_code(shop.stream_url("not-a-token", customer.id)) == TOO_MANY
    assert await shop.closes(TOO_MANY) == refused_before + 3
    limited = await shop.scraped("order_api_rate_limit_rejections_total", limit="websocket_ip")
    assert limited == limited_before + 3
    await sockets_forgotten(shop)


async def test_the_handshake_limit_is_per_client_address_behind_a_trusted_proxy(
    make_live_shop: LiveShopFactory,
) -> None:
    shop = await make_live_shop(
        **LIMITS_ON, rate_limit_websocket_per_ip="2/hour", trusted_proxies=["127.0.0.1/32"]
    )
    customer = await shop.account()
    url = shop.stream_url(customer.access_token, customer.id)

    async def code_from(client: str) -> int | None:
        headers = {"X-Forwarded-For": client}
        async with open_stream(url, additional_headers=headers) as websocket:
            try:
                await next_frame(websocket)
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None
        return None  # admitted

    assert [await code_from("203.0.113.7") for _ in range(3)] == [None, None, TOO_MANY]
    assert [await code_from("198.51.100.9") for _ in range(3)] == [None, None, TOO_MANY]


async def test_the_handshake_limit_comes_before_the_database(
    make_live_shop: LiveShopFactory,
) -> None:
    unreachable = "postgresql+asyncpg://postgres@127.0.0.1:1/order_api_nowhere"
    shop = await make_live_shop(
        **LIMITS_ON,
        database_url=unreachable,
        db_pool_timeout_seconds=1,
        rate_limit_websocket_per_ip="1/hour",
    )
    token = mint(claims_for(uuid.uuid4()))
    assert await refusal_code(shop.stream_url(token)) == 1013  # admitted to the token check
    assert await refusal_code(shop.stream_url(token)) == TOO_MANY  # no database call at all


async def test_a_user_at_the_cap_on_one_process_may_open_more_on_another(
    make_live_shop: LiveShopFactory,
) -> None:
    """The caps are per process: what they protect (descriptors, memory, send queues) is."""
    first = await make_live_shop(ws_heartbeat_seconds=0.2, ws_max_sockets_per_user=1)
    second = await make_live_shop(ws_heartbeat_seconds=0.2, ws_max_sockets_per_user=1)
    customer = await first.account()
    async with AsyncExitStack() as sockets:
        on_first = await admitted_or_refused(
            first.stream_url(customer.access_token, customer.id), sockets
        )
        assert isinstance(on_first, ClientConnection)
        assert await refusal_code(first.stream_url(customer.access_token, customer.id)) == TOO_MANY
        on_second = await admitted_or_refused(
            second.stream_url(customer.access_token, customer.id), sockets
        )
        assert isinstance(on_second, ClientConnection)


@pytest.mark.only_backend("postgresql")  # Redis means production: PostgreSQL
async def test_the_handshake_limit_is_shared_by_every_process_through_redis(
    make_live_shop: LiveShopFactory, redis_url: str, redis_prefix: str
) -> None:
    shared: dict[str, Any] = {"redis_url": redis_url, "redis_prefix": redis_prefix}
    first, second = [
        await make_live_shop(**LIMITS_ON, **shared, rate_limit_websocket_per_ip="2/hour")
        for _ in range(2)
    ]
    customer = await first.account()
    async with AsyncExitStack() as sockets:
        on_first = await admitted_or_refused(
            first.stream_url(customer.access_token, customer.id), sockets
        )
        on_second = await admitted_or_refused(
            second.stream_url(customer.access_token, customer.id), sockets
        )
        assert isinstance(on_first, ClientConnection)
        assert isinstance(on_second, ClientConnection)
        for shop in (first, second):
            assert (
                await refusal_code(shop.stream_url(customer.access_token, customer.id)) == TOO_MANY
            )
