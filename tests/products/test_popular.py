"""The top sellers: what counts as sold, and how long the cached list may lag behind orders.

Orders do not invalidate the cache (a minute's lag is the contract); product changes do, in every
process sharing the cache. A Redis outage only costs the cache: the list comes from the database.
"""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio

from order_api.platform.adapters import InProcessCache, RedisCache
from order_api.users.models import Role
from tests.accounts import Shop, ShopFactory
from tests.catalogue import ORDERS, PRODUCTS, create_product, order

POPULAR = f"{PRODUCTS}/popular"
CACHE_TTL_MS = 60_000
CLOSED_REDIS_URL = "redis://127.0.0.1:1/0"


async def popular(shop: Shop) -> list[tuple[str, int]]:
    """The list as (product name, units sold), in the order served."""
    response = await shop.client.get(POPULAR)
    assert response.status_code == 200, response.text
    return [(entry["product"]["name"], entry["units_sold"]) for entry in response.json()]


async def place(shop: Shop, headers: dict[str, str], items: list[tuple[str, int]]) -> str:
    response = await order(shop, headers, items)
    assert response.status_code == 201, response.text
    order_id: str = response.json()["id"]
    return order_id


async def test_top_sellers_count_units_in_orders_that_stand(shop: Shop) -> None:
    staff = await shop.account(Role.STAFF)
    ada, bob = await shop.account(), await shop.account()
    made = {
        name: (await create_product(shop, staff.headers, name=name, stock=50))["id"]
        for name in ["Beans", "Mug", "Grinder", "Tea", "Withdrawn"]
    }
    await place(shop, ada.headers, [(made["Beans"], 5), (made["Mug"], 2)])
    await place(shop, bob.headers, [(made["Mug"], 4), (made["Grinder"], 3)])
    await place(shop, bob.headers, [(made["Tea"], 1), (made["Withdrawn"], 30)])
    # Without the cancellation Tea would lead with 21 units and Grinder would pass Beans.
    cancelled = await place(shop, ada.headers, [(made["Tea"], 20), (made["Grinder"], 4)])
    cancel = await shop.client.post(f"{ORDERS}/{cancelled}/cancel", headers=ada.headers)
    assert cancel.status_code == 200, cancel.text
    deleted = await shop.client.delete(f"{PRODUCTS}/{made['Withdrawn']}", headers=staff.headers)
    assert deleted.status_code == 204, deleted.text

    assert await popular(shop) == [("Mug", 6), ("Beans", 5), ("Grinder", 3), ("Tea", 1)]


async def test_each_entry_carries_the_product_as_read(shop: Shop) -> None:
    staff = await shop.account(Role.STAFF)
    customer = await shop.account()
    beans = await create_product(shop, staff.headers, price_cents=2490, stock=40)
    await place(shop, customer.headers, [(beans["id"], 3)])

    response = await shop.client.get(POPULAR)

    assert response.status_code == 200, response.text
    as_read = (await shop.client.get(f"{PRODUCTS}/{beans['id']}")).json()
    assert response.json() == [{"product": as_read, "units_sold": 3}]
    assert as_read["stock"] == 37


async def test_at_most_ten_best_sellers_are_listed(shop: Shop) -> None:
    staff = await shop.account(Role.STAFF)
    customer = await shop.account()
    quantities = {f"Product {units:02d}": units for units in range(1, 13)}
    items = [
        ((await create_product(shop, staff.headers, name=name, stock=20))["id"], units)
        for name, units in quantities.items()
    ]
    await place(shop, customer.headers, items)

    expected = sorted(quantities.items(), key=lambda entry: entry[1], reverse=True)[:10]
    assert await popular(shop) == expected


# The in-process cache of an embedded (single-process) shop


@pytest.mark.parametrize("change", ["create", "patch", "delete"])
async def test_the_cached_list_lags_orders_until_a_product_changes(shop: Shop, change: str) -> None:
    assert isinstance(shop.app.state.cache, InProcessCache)
    staff = await shop.account(Role.STAFF)
    customer = await shop.account()
    beans = await create_product(shop, staff.headers, name="Beans")
    # Unrelated to the list: any product change invalidates it, not only a listed one's.
    unsold = await create_product(shop, staff.headers, name="Unsold")
    await place(shop, customer.headers, [(beans["id"], 2)])
    assert await popular(shop) == [("Beans", 2)]

    await place(shop, customer.headers, [(beans["id"], 3)])
    assert await popular(shop) == [("Beans", 2)]

    await change_product(shop, staff.headers, change, unsold["id"])
    assert await popular(shop) == [("Beans", 5)]


async def change_product(
    shop: Shop, staff_headers: dict[str, str], change: str, product_id: str
) -> None:
    url = f"{PRODUCTS}/{product_id}"
    if change == "create":
        await create_product(shop, staff_headers)
        return
    if change == "patch":
        response = await shop.client.patch(url, json={"stock": 99}, headers=staff_headers)
    else:
        response = await shop.client.delete(url, headers=staff_headers)
    assert response.is_success, response.text


# Redis: one cache for every API process


async def redis_shop(make_shop: ShopFactory, redis_url: str, redis_prefix: str) -> Shop:
    shop = await make_shop(redis_url=redis_url, redis_prefix=redis_prefix)
    assert isinstance(shop.app.state.cache, RedisCache)
    return shop


async def test_two_processes_share_the_list_and_its_invalidation(
    make_shop: ShopFactory, redis_url: str, redis_prefix: str
) -> None:
    api1 = await redis_shop(make_shop, redis_url, redis_prefix)
    api2 = await redis_shop(make_shop, redis_url, redis_prefix)
    staff = await api1.account(Role.STAFF)
    customer = await api1.account()
    beans = await create_product(api1, staff.headers, name="Beans")
    await place(api1, customer.headers, [(beans["id"], 2)])
    assert await popular(api1) == [("Beans", 2)]

    await place(api2, customer.headers, [(beans["id"], 3)])
    # api2 never read the list: answering 2 rather than 5, it read the list api1 cached.
    assert await popular(api2) == [("Beans", 2)]
    assert await popular(api1) == [("Beans", 2)]

    patched = await api2.client.patch(
        f"{PRODUCTS}/{beans['id']}", json={"name": "Beans, 1 kg"}, headers=staff.headers
    )
    assert patched.status_code == 200, patched.text
    assert await popular(api1) == [("Beans, 1 kg", 5)]


async def test_the_redis_entry_lives_at_most_a_minute(
    make_shop: ShopFactory, redis_url: str, redis_prefix: str
) -> None:
    shop = await redis_shop(make_shop, redis_url, redis_prefix)
    staff = await shop.account(Role.STAFF)
    customer = await shop.account()
    beans = await create_product(shop, staff.headers)
    await place(shop, customer.headers, [(beans["id"], 1)])
    key = f"{redis_prefix}:cache:products:popular"
    client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await client.exists(key) == 0
        await popular(shop)
        expiry_ms: Any = await client.pttl(key)
    finally:
        await client.aclose()

    # pttl is -2 for a missing key and -1 for one that never expires.
    assert 0 < expiry_ms <= CACHE_TTL_MS


async def test_popular_is_served_from_the_database_while_redis_is_down(
    make_shop: ShopFactory,
) -> None:
    shop = await make_shop(redis_url=CLOSED_REDIS_URL, redis_timeout_seconds=0.2)
    staff = await shop.account(Role.STAFF)
    customer = await shop.account()
    beans = await create_product(shop, staff.headers, name="Beans")
    await place(shop, customer.headers, [(beans["id"], 2)])

    assert await popular(shop) == [("Beans", 2)]
    await place(shop, customer.headers, [(beans["id"], 3)])
    # Nothing could be cached, so every read is fresh.
    assert await popular(shop) == [("Beans", 5)]


async def test_an_unreadable_cache_entry_is_a_miss_and_is_replaced(
    make_shop: ShopFactory, redis_url: str, redis_prefix: str
) -> None:
    # Another version of the service may have cached another shape during a rolling deploy.
    shop = await redis_shop(make_shop, redis_url, redis_prefix)
    staff = await shop.account(Role.STAFF)
    customer = await shop.account()
    beans = await create_product(shop, staff.headers, name="Beans")
    await place(shop, customer.headers, [(beans["id"], 2)])
    key = f"{redis_prefix}:cache:products:popular"
    client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(redis_url)
    try:
        await client.set(key, b'[{"product": 1}]', px=CACHE_TTL_MS)
        assert await popular(shop) == [("Beans", 2)]
        assert b"Beans" in (await client.get(key) or b"")
    finally:
        await client.aclose()
