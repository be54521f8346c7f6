"""Rate limits (SPEC §2, reliability rows API-11, API-14, HTTP-03): 429 problems with Retry-After,
per client address, per account and per customer, counted in memory (embedded) and in Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx2
import pytest
import redis.asyncio

from order_api.users.models import Role
from tests.accounts import PASSWORD, Shop, ShopFactory, new_email
from tests.catalogue import ORDERS, PAYMENT_METHOD_ID, create_product
from tests.operations.test_metrics import client_from, scrape, value
from tests.test_errors import assert_problem

PEER_1 = ("192.0.2.1", 5000)
PEER_2 = ("192.0.2.2", 5000)
LimitedShop = Callable[..., Awaitable[Shop]]


@pytest.fixture(params=["in_process", "redis"])
def limited_shop(request: pytest.FixtureRequest, make_shop: ShopFactory) -> LimitedShop:
    """A shop with limits on, counted in memory or in the real Redis (a prefix of the test's)."""
    shared: dict[str, Any] = {}
    if request.param == "redis":
        shared = {
            "redis_url": request.getfixturevalue("redis_url"),
            "redis_prefix": request.getfixturevalue("redis_prefix"),
        }

    async def build(**limits: Any) -> Shop:
        await clear_of_a_minute_edge()
        return await make_shop(rate_limit_enabled=True, **shared, **limits)

    return build


async def clear_of_a_minute_edge(margin_seconds: float = 10.0) -> None:
    """The general limit counts in sliding windows aligned on the clock: across a window's edge
    the previous window's count weighs a little less, so "3/minute" could let a 4th through.
    A test starts far enough from the next edge not to straddle one."""
    into_minute = time.time() % 60
    if into_minute > 60 - margin_seconds:
        await asyncio.sleep(60 - into_minute + 0.1)


async def log_in(client: httpx2.AsyncClient, email: str, password: str) -> httpx2.Response:
    return await client.post("/api/v1/auth/token", data={"username": email, "password": password})


def assert_rate_limited(response: httpx2.Response) -> int:
    """A 429 problem whose Retry-After is a whole number of seconds; returns it."""
    assert_problem(response, 429, "rate_limited")
    retry_after = int(response.headers["retry-after"])
    assert retry_after >= 1
    return retry_after


async def test_wrong_passwords_from_one_address_trip_the_address_limit(
    limited_shop: LimitedShop,
) -> None:
    shop = await limited_shop(rate_limit_login_per_ip="5/minute")
    victim = await shop.create_user()
    before = await scrape(shop.client)
    async with client_from(shop, PEER_1) as attacker, client_from(shop, PEER_2) as other:
        statuses = [(await log_in(attacker, victim.email, "wrong guess")).status_code]
        # Spraying: one wrong password for each of several accounts, from the same address.
        for _ in range(5):
            statuses.append((await log_in(attacker, new_email(), "wrong guess")).status_code)
        assert statuses == [401] * 5 + [429]
        assert_rate_limited(await log_in(attacker, victim.email, PASSWORD))
        # Another address is not affected, and the victim logs in.
        assert (await log_in(other, victim.email, PASSWORD)).status_code == 200
    after = await scrape(shop.client)
    rejections = "order_api_rate_limit_rejections_total"
    assert (
        value(after, rejections, limit="login_ip") - value(before, rejections, limit="login_ip")
        == 2
    )


async def test_the_account_limit_follows_the_account_across_addresses(
    limited_shop: LimitedShop,
) -> None:
    shop = await limited_shop(rate_limit_login_per_account="3/minute")
    victim = await shop.create_user()
    async with client_from(shop, PEER_1) as first, client_from(shop, PEER_2) as second:
        for _ in range(3):
            assert (await log_in(first, victim.email, "wrong guess")).status_code == 401
        # A new address, the e-mail in other letter case, even the right password: still 429,
        # with the same words as the address limit (no "account locked" to learn from).
        body = assert_problem(
            await log_in(second, victim.email.upper(), PASSWORD), 429, "rate_limited"
        )
        assert body["detail"].startswith("Too many login attempts.")
        other_account = await shop.create_user()
        assert (await log_in(second, other_account.email, PASSWORD)).status_code == 200


async def test_a_locked_login_opens_again_after_retry_after(limited_shop: LimitedShop) -> None:
    shop = await limited_shop(rate_limit_login_per_account="2/2seconds")
    user = await shop.create_user()
    for _ in range(2):
        assert (await shop.log_in(user.email, "wrong guess")).status_code == 401
    retry_after = assert_rate_limited(await shop.log_in(user.email))
    assert retry_after <= 2
    # Waiting what the 429 said is enough: the lockout is temporary (API-11 e).
    await asyncio.sleep(retry_after)
    assert (await shop.log_in(user.email)).status_code == 200


async def test_concurrent_attempts_get_exactly_the_limit(limited_shop: LimitedShop) -> None:
    shop = await limited_shop(rate_limit_login_per_account="5/minute")
    user = await shop.create_user()
    attempts = [shop.log_in(user.email, "wrong guess") for _ in range(20)]
    statuses = sorted(response.status_code for response in await asyncio.gather(*attempts))
    assert statuses == [401] * 5 + [429] * 15


async def test_registrations_are_limited_per_address(limited_shop: LimitedShop) -> None:
    shop = await limited_shop(rate_limit_registration_per_ip="3/hour")
    async with client_from(shop, PEER_1) as client:

        async def register(email: str) -> httpx2.Response:
            body = {"email": email, "password": PASSWORD, "full_name": "Ada"}
            return await client.post("/api/v1/users", json=body)

        # A request that fails validation is not a registration attempt.
        assert (await register("not an e-mail")).status_code == 422
        first = new_email()
        assert (await register(first)).status_code == 201
        assert_problem(await register(first), 409, "email_taken")
        assert (await register(new_email())).status_code == 201
        refused = new_email()
        assert_rate_limited(await register(refused))
    async with client_from(shop, PEER_2) as elsewhere:
        body = {"email": refused, "password": PASSWORD, "full_name": "Ada"}
        assert (await elsewhere.post("/api/v1/users", json=body)).status_code == 201


async def test_orders_are_limited_per_customer_and_a_429_is_never_replayed(
    limited_shop: LimitedShop,
) -> None:
    shop = await limited_shop(rate_limit_orders_per_user="2/second")
    customer, other = await shop.account(), await shop.account()
    staff = await shop.account(Role.STAFF)
    product = await create_product(shop, staff.headers, stock=100)
    body = {
        "items": [{"product_id": product["id"], "quantity": 1}],
        "payment_method_id": PAYMENT_METHOD_ID,
    }

    async def place(headers: dict[str, str], key: str) -> httpx2.Response:
        return await shop.client.post(
            ORDERS, json=body, headers={**headers, "Idempotency-Key": key}
        )

    keys = [str(uuid.uuid4()) for _ in range(3)]
    outcomes = await asyncio.gather(*(place(customer.headers, key) for key in keys))
    assert sorted(response.status_code for response in outcomes) == [201, 201, 429]
    refused_key, refused = next(
        (key, response)
        for key, response in zip(keys, outcomes, strict=True)
        if response.status_code == 429
    )
    assert (await place(other.headers, str(uuid.uuid4()))).status_code == 201

    # The refused key was not stored: once the window has room it places its order.
    await asyncio.sleep(assert_rate_limited(refused))
    retry = await place(customer.headers, refused_key)
    assert retry.status_code == 201, retry.text
    assert "idempotent-replayed" not in retry.headers
    orders = (await shop.client.get(ORDERS, headers=customer.headers)).json()
    assert orders["total"] == 3


async def test_the_general_limit_refuses_with_cors_and_headers_but_never_probes(
    limited_shop: LimitedShop,
) -> None:
    origin = "https://shop.example"
    shop = await limited_shop(rate_limit_default="3/minute", allowed_origins=[origin])
    for _ in range(3):
        assert (await shop.client.get("/api/v1/products")).status_code == 200
    refused = await shop.client.get("/api/v1/products", headers={"Origin": origin})
    assert_rate_limited(refused)
    assert refused.headers["access-control-allow-origin"] == origin
    assert refused.headers["x-content-type-options"] == "nosniff"
    for path in ("/health/live", "/health/ready", "/health", "/metrics"):
        assert (await shop.client.get(path)).status_code == 200, path
    async with client_from(shop, PEER_2) as other:
        assert (await other.get("/api/v1/products")).status_code == 200


async def test_limits_off_refuse_nothing(make_shop: ShopFactory) -> None:
    shop = await make_shop(
        rate_limit_enabled=False, rate_limit_default="1/minute", rate_limit_login_per_ip="1/minute"
    )
    user = await shop.create_user()
    for _ in range(5):
        assert (await shop.log_in(user.email, "wrong guess")).status_code == 401
    assert (await shop.log_in(user.email)).status_code == 200


async def test_forwarded_for_from_an_untrusted_peer_is_ignored_and_counted(
    limited_shop: LimitedShop,
) -> None:
    shop = await limited_shop(rate_limit_default="3/minute", trusted_proxies="10.0.0.0/8")
    ignored = "order_api_forwarded_headers_ignored_total"
    before = value(await scrape(shop.client), ignored)
    async with client_from(shop, PEER_1) as client:
        statuses = []
        for hop in range(5):
            spoofed = {"X-Forwarded-For": f"198.51.100.{hop}", "X-Real-IP": f"198.51.100.{hop}"}
            statuses.append((await client.get("/api/v1/products", headers=spoofed)).status_code)
    assert statuses == [200, 200, 200, 429, 429]
    assert value(await scrape(shop.client), ignored) - before == 5


async def test_a_trusted_proxy_names_the_client_by_its_right_most_hop(
    limited_shop: LimitedShop,
) -> None:
    shop = await limited_shop(rate_limit_default="2/minute", trusted_proxies="10.0.0.0/8")
    async with client_from(shop, ("10.0.0.5", 4000)) as proxy:

        async def through_proxy(forwarded_for: str) -> int:
            headers = {"X-Forwarded-For": forwarded_for}
            return (await proxy.get("/api/v1/products", headers=headers)).status_code

        # The client wrote the left part; the proxy appended what it saw, 6.6.6.6.
        assert [await through_proxy(f"1.1.1.{n}, 6.6.6.6, 10.0.0.7") for n in range(3)] == [
            200,
            200,
            429,
        ]
        assert await through_proxy("7.7.7.7") == 200
        assert await through_proxy("garbage, 7.7.7.7") == 200
        assert await through_proxy("7.7.7.7") == 429


async def test_two_processes_share_the_redis_windows(
    make_shop: ShopFactory, redis_url: str, redis_prefix: str
) -> None:
    shared = {"rate_limit_enabled": True, "redis_url": redis_url, "redis_prefix": redis_prefix}
    first = await make_shop(rate_limit_login_per_account="4/minute", **shared)
    second = await make_shop(rate_limit_login_per_account="4/minute", **shared)
    user = await first.create_user()
    statuses = []
    for attempt in range(6):
        shop = (first, second)[attempt % 2]
        statuses.append((await shop.log_in(user.email, "wrong guess")).status_code)
    assert statuses == [401] * 4 + [429] * 2
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{redis_prefix}:limits:*")]
    finally:
        await client.aclose()
    assert keys
    assert not any(user.email.encode() in key for key in keys)


async def test_a_forwarded_hop_that_is_no_address_never_names_the_client(
    limited_shop: LimitedShop,
) -> None:
    """Left of a trusted proxy's hop, text that is not an address was the client's own: the
    client is the last address known, so changing that text does not escape the limit.
    (uvicorn's ProxyHeadersMiddleware would name the client by the text itself.)"""
    shop = await limited_shop(rate_limit_default="2/minute", trusted_proxies="10.0.0.0/8")
    async with client_from(shop, ("10.0.0.5", 4000)) as proxy:
        statuses = []
        for n in range(3):
            headers = {"X-Forwarded-For": f"not-an-address-{n}, 10.0.0.7"}
            statuses.append((await proxy.get("/api/v1/products", headers=headers)).status_code)
    assert statuses == [200, 200, 429]


async def test_forwarded_hops_with_ports_name_their_address(limited_shop: LimitedShop) -> None:
    shop = await limited_shop(rate_limit_default="2/minute", trusted_proxies="10.0.0.0/8")
    async with client_from(shop, ("10.0.0.5", 4000)) as proxy:
        statuses = []
        for forwarded_for in ("6.6.6.6:4711", "6.6.6.6", "6.6.6.6:80", "[2001:db8::9]:443"):
            headers = {"X-Forwarded-For": forwarded_for}
            statuses.append((await proxy.get("/api/v1/products", headers=headers)).status_code)
    assert statuses == [200, 200, 429, 200]


async def test_an_ipv6_client_is_limited_as_its_64(limited_shop: LimitedShop) -> None:
    shop = await limited_shop(rate_limit_login_per_ip="2/minute")
    results = []
    for peer in ("2001:db8:0:7::1", "2001:db8:0:7::2", "2001:db8:0:7:ffff::3", "2001:db8:0:8::1"):
        async with client_from(shop, (peer, 5000)) as client:
            results.append((await log_in(client, new_email(), "wrong guess")).status_code)
    # The first three share one /64; the fourth is another subscriber.
    assert results == [401, 401, 429, 401]
