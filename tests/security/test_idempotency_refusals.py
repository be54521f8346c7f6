"""SPEC §5 decision 9: a refusal about who the caller is (401) is never stored under an
`Idempotency-Key`, so the key still places its order once the customer has logged in again.
A stored 401 would replay "not authenticated" to the right, authenticated user for 24 h.

(422 and 429 are covered in tests/orders/test_idempotency.py and tests/edge/test_rate_limits.py;
no caller who may send POST /orders gets a 403 from it: every signed-in role may order.)
"""

from __future__ import annotations

from sqlalchemy import func, select

from order_api.orders.models import IdempotencyRecord
from order_api.users.models import Role
from tests.accounts import Shop, bearer
from tests.catalogue import ORDERS, PAYMENT_METHOD_ID, create_product, sessions, stock_of
from tests.test_errors import assert_problem

KEY = "checkout-after-logout"


async def stored_keys(shop: Shop) -> int:
    async with sessions(shop)() as session:
        return await session.scalar(select(func.count()).select_from(IdempotencyRecord)) or 0


async def test_a_401_is_not_stored_so_the_key_places_the_order_after_a_new_login(
    shop: Shop,
) -> None:
    staff = await shop.account(Role.STAFF)
    customer = await shop.account()
    product = await create_product(shop, staff.headers, stock=5)
    body = {
        "items": [{"product_id": product["id"], "quantity": 1}],
        "payment_method_id": PAYMENT_METHOD_ID,
    }
    logged_out = await shop.client.post("/api/v1/auth/logout-all", headers=customer.headers)
    assert logged_out.status_code == 204, logged_out.text

    for headers in ({}, customer.headers):  # anonymous, then the customer's revoked token
        refused = await shop.client.post(
            ORDERS, json=body, headers={**headers, "Idempotency-Key": KEY}
        )
        assert_problem(refused, 401, "not_authenticated" if not headers else "invalid_token")
    assert await stored_keys(shop) == 0

    login = await shop.log_in(customer.email)
    assert login.status_code == 200, login.text
    fresh = {**bearer(login.json()["access_token"]), "Idempotency-Key": KEY}
    placed = await shop.client.post(ORDERS, json=body, headers=fresh)
    assert placed.status_code == 201, placed.text
    assert "idempotent-replayed" not in placed.headers
    assert placed.json()["customer_id"] == str(customer.id)
    assert await stock_of(shop, product["id"]) == 4
    assert await stored_keys(shop) == 1
