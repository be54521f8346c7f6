"""What flows on an admitted socket: each event once, to whoever may see it, and heartbeats."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY

from order_api.orders.events import ORDERS_CHANNEL
from order_api.users.models import Role
from tests.accounts import Account
from tests.catalogue import ORDERS, create_product, order
from tests.streams import (
    HEARTBEAT,
    LiveShop,
    LiveShopFactory,
    frames_until_closed,
    next_event,
    next_frame,
    open_stream,
)
from tests.tokens import FromNow, claims_for, mint
from tests.waiting import wait_until

EVENT_KEYS = {"order_id", "status", "previous_status", "at"}


@pytest.fixture
async def shop(make_live_shop: LiveShopFactory) -> LiveShop:
    return await make_live_shop(ws_heartbeat_seconds=0.3)


async def place(shop: LiveShop, staff: Account, customer: Account) -> str:
    product = await create_product(shop, staff.headers, stock=5)
    placed = await order(shop, customer.headers, [(product["id"], 1)])
    assert placed.status_code == 201, placed.text
    order_id: str = placed.json()["id"]
    return order_id


async def move(shop: LiveShop, staff: Account, order_id: str, status: str) -> None:
    moved = await shop.client.post(
        f"{ORDERS}/{order_id}/status", json={"status": status}, headers=staff.headers
    )
    assert moved.status_code == 200, moved.text


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def quiet_until_heartbeats(websocket: Any, beats: int = 2) -> None:
    """Nothing but heartbeats for a few beats: no duplicate or foreign event is on its way."""
    for _ in range(beats):
        assert await next_frame(websocket) == HEARTBEAT


async def test_customer_and_staff_see_each_transition_once_in_order(shop: LiveShop) -> None:
    staff, customer, other = (
        await shop.account(Role.STAFF),
        await shop.account(),
        await shop.account(),
    )
    async with (
        open_stream(shop.stream_url(customer.access_token, customer.id)) as mine,
        open_stream(shop.stream_url(other.access_token, other.id)) as theirs,
        open_stream(shop.stream_url(staff.access_token)) as board,
    ):
        order_id = await place(shop, staff, customer)
        expected: list[tuple[str | None, str]] = [(None, "PENDING")]
        seen: dict[str, list[dict[str, Any]]] = {"mine": [], "board": []}
        for name, websocket in (("mine", mine), ("board", board)):
            seen[name].append(await next_event(websocket))
        for status in ("PAID", "SHIPPED", "DELIVERED"):
            await move(shop, staff, order_id, status)
            expected.append((expected[-1][1], status))
            for name, websocket in (("mine", mine), ("board", board)):
                seen[name].append(await next_event(websocket))
        for events in seen.values():
            assert [set(event) for event in events] == [EVENT_KEYS] * 4
            assert {event["order_id"] for event in events} == {order_id}
            assert [(e["previous_status"], e["status"]) for e in events] == expected
            assert [e["at"] for e in events] == sorted(e["at"] for e in events)
        for websocket in (mine, board, theirs):
            await quiet_until_heartbeats(websocket)


async def test_heartbeats_keep_an_idle_socket_talking(shop: LiveShop) -> None:
    customer = await shop.account()
    sent_before = sample("order_api_websocket_messages_sent_total", kind="heartbeat")
    async with open_stream(shop.stream_url(customer.access_token, customer.id)) as websocket:
        for _ in range(3):
            assert await next_frame(websocket) == HEARTBEAT
    assert sample("order_api_websocket_messages_sent_total", kind="heartbeat") >= sent_before + 3


async def test_open_sockets_are_counted_while_open(shop: LiveShop) -> None:
    staff, customer = await shop.account(Role.STAFF), await shop.account()
    before = sample("order_api_websockets_open", stream="customer")
    async with open_stream(shop.stream_url(customer.access_token, customer.id)) as websocket:
        await next_frame(websocket)
        assert sample("order_api_websockets_open", stream="customer") == before + 1
        async with open_stream(shop.stream_url(staff.access_token)) as board:
            await next_frame(board)
            assert sample("order_api_websockets_open", stream="every_order") >= 1
    hub = shop.app.state.order_stream
    await wait_until(lambda: not hub.watchers(), "the hub to forget closed sockets")
    assert sample("order_api_websockets_open", stream="customer") == before


@pytest.mark.parametrize("payload", ["hello", b"\x00\x01"], ids=["text", "binary"])
async def test_a_client_that_sends_anything_is_closed_1003(
    shop: LiveShop, payload: str | bytes
) -> None:
    customer = await shop.account()
    async with open_stream(shop.stream_url(customer.access_token, customer.id)) as websocket:
        await websocket.send(payload)
        _, code = await frames_until_closed(websocket)
    assert code == 1003


async def test_an_oversized_client_frame_is_cut_off_1009(shop: LiveShop) -> None:
    customer = await shop.account()
    async with open_stream(shop.stream_url(customer.access_token, customer.id)) as websocket:
        await websocket.send("x" * 100_000)
        _, code = await frames_until_closed(websocket)
    assert code == 1009


async def test_messages_on_the_channel_that_are_not_events_are_dropped(shop: LiveShop) -> None:
    customer = await shop.account()
    dropped = sample("order_api_stream_messages_dropped_total")
    real = {
        "order_id": str(uuid.uuid4()),
        "customer_id": str(customer.id),
        "status": "PAID",
        "previous_status": "PENDING",
        "at": datetime.now(UTC).isoformat(),
    }
    junk = [b"not json", b"{}", b"x" * 1_000_000, json.dumps({**real, "status": "LOST"}).encode()]
    async with open_stream(shop.stream_url(customer.access_token, customer.id)) as websocket:
        for message in [*junk, json.dumps(real).encode()]:
            await shop.app.state.pubsub.publish(ORDERS_CHANNEL, message)
        event = await next_event(websocket)
    assert event["order_id"] == real["order_id"]
    assert event["status"] == "PAID"
    assert sample("order_api_stream_messages_dropped_total") == dropped + len(junk)


async def test_a_socket_ends_4401_when_its_token_expires(shop: LiveShop) -> None:
    customer = await shop.account()
    token = mint(claims_for(customer.id, exp=FromNow(1.5)))
    async with open_stream(shop.stream_url(token, customer.id)) as websocket:
        frames, code = await frames_until_closed(websocket)
    assert code == 4401
    assert frames  # admitted, then ended: heartbeats came before the close


async def test_logout_everywhere_ends_open_sockets_4401_at_the_next_beat(shop: LiveShop) -> None:
    customer = await shop.account()
    async with open_stream(shop.stream_url(customer.access_token, customer.id)) as websocket:
        await next_frame(websocket)
        response = await shop.client.post("/api/v1/auth/logout-all", headers=customer.headers)
        assert response.status_code == 204, response.text
        _, code = await frames_until_closed(websocket)
    assert code == 4401


async def test_deactivation_and_demotion_end_open_sockets_4401(shop: LiveShop) -> None:
    admin, staff, customer = (
        await shop.account(Role.ADMIN),
        await shop.account(Role.STAFF),
        await shop.account(),
    )
    async with (
        open_stream(shop.stream_url(customer.access_token, customer.id)) as customers,
        open_stream(shop.stream_url(staff.access_token)) as board,
    ):
        await asyncio.gather(next_frame(customers), next_frame(board))
        deactivated = await shop.client.patch(
            f"/api/v1/users/{customer.id}", json={"is_active": False}, headers=admin.headers
        )
        demoted = await shop.client.patch(
            f"/api/v1/users/{staff.id}", json={"role": "customer"}, headers=admin.headers
        )
        assert (deactivated.status_code, demoted.status_code) == (200, 200), deactivated.text
        (_, customer_code), (_, staff_code) = await asyncio.gather(
            frames_until_closed(customers), frames_until_closed(board)
        )
    assert (customer_code, staff_code) == (4401, 4401)


async def test_the_lifetime_cap_ends_a_socket_4000(make_live_shop: LiveShopFactory) -> None:
    shop = await make_live_shop(ws_heartbeat_seconds=0.3, ws_max_lifetime_seconds=1)
    customer = await shop.account()
    async with open_stream(shop.stream_url(customer.access_token, customer.id)) as websocket:
        frames, code = await frames_until_closed(websocket)
    assert code == 4000
    assert frames  # it was a working socket until then (heartbeats)
