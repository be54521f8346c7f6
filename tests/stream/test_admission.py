"""Who may open which order stream: the token first (4401), then the id (1008), then the right
(4403); a refused socket carries no data frame (SPEC §5.5, reliability rows API-04, JWT-01/06)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from order_api.users.models import Role
from tests.accounts import Account
from tests.streams import (
    HEARTBEAT,
    LiveShop,
    LiveShopFactory,
    next_frame,
    open_stream,
    refusal_code,
)
from tests.tokens import FromNow, b64, claims_for, mint


async def assert_admitted(shop: LiveShop, url: str, **options: Any) -> None:
    """Admitted: the socket stays open and carries heartbeats (the test shop beats fast)."""
    async with open_stream(url, **options) as websocket:
        assert await next_frame(websocket) == HEARTBEAT


@pytest.fixture
async def shop(make_live_shop: LiveShopFactory) -> LiveShop:
    return await make_live_shop(ws_heartbeat_seconds=0.2)


@pytest.fixture
async def customer(shop: LiveShop) -> Account:
    return await shop.account(Role.CUSTOMER)


async def test_a_customer_may_watch_their_own_orders(shop: LiveShop, customer: Account) -> None:
    await assert_admitted(shop, shop.stream_url(customer.access_token, customer.id))


@pytest.mark.parametrize("role", [Role.STAFF, Role.ADMIN])
async def test_staff_may_watch_any_customer_and_every_order(
    shop: LiveShop, customer: Account, role: Role
) -> None:
    staff = await shop.account(role)
    await assert_admitted(shop, shop.stream_url(staff.access_token, customer.id))
    await assert_admitted(shop, shop.stream_url(staff.access_token))
    # A well-formed id of nobody is a filter that matches nothing, not an error, for staff.
    await assert_admitted(shop, shop.stream_url(staff.access_token, uuid.uuid4()))


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "not-a-jwt",
        "a.b.c",
        b64({"alg": "none", "typ": "JWT"}) + "." + b64({"sub": "x"}) + ".",
        "x" * 5000,
    ],
    ids=["missing", "empty", "garbage", "three-parts", "alg-none", "oversized"],
)
async def test_a_bad_token_is_closed_4401(
    shop: LiveShop, customer: Account, token: str | None
) -> None:
    assert await refusal_code(shop.stream_url(token, customer.id)) == 4401
    assert await refusal_code(shop.stream_url(token)) == 4401


async def test_expired_refresh_type_and_foreign_tokens_are_closed_4401(
    shop: LiveShop, customer: Account
) -> None:
    forged = [
        mint(claims_for(customer.id, iat=FromNow(-120), exp=FromNow(-60))),  # expired
        mint(claims_for(customer.id, type="refresh")),
        mint(claims_for(customer.id), key="another-secret-" + "y" * 40),
        customer.refresh_token,  # an opaque refresh token is no access token
    ]
    for token in forged:
        assert await refusal_code(shop.stream_url(token, customer.id)) == 4401


async def test_a_revoked_or_deactivated_account_is_closed_4401(
    shop: LiveShop, customer: Account
) -> None:
    assert (await shop.client.post("/api/v1/auth/logout-all", headers=customer.headers)).is_success
    assert await refusal_code(shop.stream_url(customer.access_token, customer.id)) == 4401
    other = await shop.account()
    deleted = await shop.client.delete(f"/api/v1/users/{other.id}", headers=other.headers)
    assert deleted.status_code == 204, deleted.text
    assert await refusal_code(shop.stream_url(other.access_token, other.id)) == 4401


async def test_another_customers_stream_is_closed_4403_like_a_random_id(
    shop: LiveShop, customer: Account
) -> None:
    other = await shop.account()
    assert await refusal_code(shop.stream_url(customer.access_token, other.id)) == 4403
    assert await refusal_code(shop.stream_url(customer.access_token, uuid.uuid4())) == 4403


async def test_a_customer_on_the_every_order_stream_is_closed_4403(
    shop: LiveShop, customer: Account
) -> None:
    assert await refusal_code(shop.stream_url(customer.access_token)) == 4403


@pytest.mark.parametrize(
    "customer_id",
    ["not-a-uuid", "1", "%00", "00000000-0000-0000-0000-00000000000g", "%27%20OR%201=1"],
)
async def test_a_malformed_customer_id_is_closed_1008_after_the_token(
    shop: LiveShop, customer: Account, customer_id: str
) -> None:
    assert await refusal_code(shop.stream_url(customer.access_token, customer_id)) == 1008
    # The token is checked before anything else: a bad token with a bad id is still 4401.
    assert await refusal_code(shop.stream_url("bad", customer_id)) == 4401


async def test_a_database_that_cannot_answer_gets_1013_not_a_crash(
    make_live_shop: LiveShopFactory,
) -> None:
    unreachable = "postgresql+asyncpg://postgres@127.0.0.1:1/order_api_nowhere"
    shop = await make_live_shop(database_url=unreachable, db_pool_timeout_seconds=1)
    token = mint(claims_for(uuid.uuid4()))
    assert await refusal_code(shop.stream_url(token)) == 1013
    assert (await shop.client.get("/health/live")).status_code == 200


async def test_a_page_from_another_origin_is_closed_4403_after_the_token(
    make_live_shop: LiveShopFactory,
) -> None:
    shop = await make_live_shop(ws_heartbeat_seconds=0.2, allowed_origins=["https://shop.example"])
    customer = await shop.account()
    url = shop.stream_url(customer.access_token, customer.id)
    hostile = ("https://evil.example", "https://shop.example.evil.example", "null", "http://[")
    for origin in hostile:
        assert await refusal_code(url, origin=origin) == 4403, origin
    assert await refusal_code(shop.stream_url("bad", customer.id), origin="null") == 4401
    # The service's own pages (the board), listed origins and non-browser clients may.
    same_origin = "http://" + shop.ws_base.removeprefix("ws://")
    trusted: list[str | None] = [same_origin, "https://shop.example", None]
    for page_origin in trusted:
        await assert_admitted(shop, url, origin=page_origin)
