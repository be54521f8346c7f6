"""`Idempotency-Key` on POST /orders: one order per key and body, the first answer replayed.

Covers reliability.md CON-04, CON-05, CON-06 and API-05; every count is read from the database.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from order_api.jobs.models import OutboxMessage
from order_api.orders import idempotency
from order_api.orders.models import IdempotencyRecord, Order
from order_api.users.models import Role
from tests.accounts import Account, Shop, ShopFactory
from tests.catalogue import create_product, sessions, stock_of
from tests.catalogue import submit_order as order
from tests.test_errors import assert_problem

ORDERS = "/api/v1/orders"
REPLAYED = "Idempotent-Replayed"


def keyed(account: Account, key: str) -> dict[str, str]:
    return {**account.headers, "Idempotency-Key": key}


async def orders_of(shop: Shop, account: Account) -> list[Order]:
    async with sessions(shop)() as session:
        return list(await session.scalars(select(Order).where(Order.customer_id == account.id)))


async def record_of(shop: Shop, account: Account, key: str) -> IdempotencyRecord | None:
    async with sessions(shop)() as session:
        return await session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.user_id == account.id, IdempotencyRecord.key == key
            )
        )


async def confirmations_to(shop: Shop, account: Account) -> int:
    async with sessions(shop)() as session:
        messages = await session.scalars(select(OutboxMessage))
        return sum(
            message.payload.get("template") == "order_confirmation"
            and message.payload.get("to") == account.email
            for message in messages
        )


async def count_records(shop: Shop) -> int:
    async with sessions(shop)() as session:
        return await session.scalar(select(func.count()).select_from(IdempotencyRecord)) or 0


@pytest.fixture
async def beans(shop: Shop, staff: Account) -> dict[str, Any]:
    return await create_product(shop, staff.headers, name="Beans", price_cents=1999, stock=10)


def two_of(product: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"product_id": product["id"], "quantity": 2}]


# --- Sequential retries (CON-04) ------------------------------------------------------------------


async def test_a_retry_replays_the_first_answer_and_places_one_order(
    shop: Shop, customer: Account, beans: dict[str, Any]
) -> None:
    first = await order(shop, keyed(customer, "checkout-1"), two_of(beans))
    retry = await order(shop, keyed(customer, "checkout-1"), two_of(beans))

    assert first.status_code == 201, first.text
    assert REPLAYED not in first.headers
    assert retry.status_code == 201
    assert retry.headers[REPLAYED] == "true"
    assert retry.headers["content-type"] == "application/json"
    assert retry.content == first.content
    assert [placed.id for placed in await orders_of(shop, customer)] == [
        uuid.UUID(first.json()["id"])
    ]
    assert await stock_of(shop, beans["id"]) == 8
    assert await confirmations_to(shop, customer) == 1


async def test_the_same_key_with_another_body_is_refused(
    shop: Shop, customer: Account, beans: dict[str, Any]
) -> None:
    first = await order(shop, keyed(customer, "checkout-1"), two_of(beans))
    assert first.status_code == 201, first.text
    other_quantity = [{"product_id": beans["id"], "quantity": 3}]

    response = await order(shop, keyed(customer, "checkout-1"), other_quantity)

    assert_problem(response, 422, "idempotency_key_reused")
    assert len(await orders_of(shop, customer)) == 1
    assert await stock_of(shop, beans["id"]) == 8


async def test_a_key_belongs_to_its_user_so_another_user_gets_a_new_order(
    shop: Shop, customer: Account, beans: dict[str, Any]
) -> None:
    """reliability.md API-05: keys are scoped per user, and B never sees A's order."""
    other = await shop.account(Role.CUSTOMER)
    mine = await order(shop, keyed(customer, "checkout-1"), two_of(beans))
    theirs = await order(shop, keyed(other, "checkout-1"), two_of(beans))

    assert mine.status_code == 201, mine.text
    assert theirs.status_code == 201, theirs.text
    assert REPLAYED not in theirs.headers
    assert theirs.json()["customer_id"] == str(other.id)
    assert theirs.json()["id"] != mine.json()["id"]
    replay = await order(shop, keyed(customer, "checkout-1"), two_of(beans))
    assert replay.headers[REPLAYED] == "true"
    assert replay.content == mine.content
    assert await stock_of(shop, beans["id"]) == 6


# --- Concurrent duplicates (CON-05) ---------------------------------------------------------------


async def test_twenty_concurrent_duplicates_on_two_apps_place_one_order(
    shop: Shop, make_shop: ShopFactory, customer: Account, beans: dict[str, Any]
) -> None:
    other_app = await make_shop()
    headers = keyed(customer, "checkout-1")

    responses = await asyncio.gather(
        *(order(shop if index % 2 else other_app, headers, two_of(beans)) for index in range(20))
    )

    placed = await orders_of(shop, customer)
    assert len(placed) == 1
    created = [response for response in responses if response.status_code == 201]
    assert created
    assert {response.json()["id"] for response in created} == {str(placed[0].id)}
    assert len({response.content for response in created}) == 1
    busy = [response for response in responses if response.status_code != 201]
    for response in busy:
        assert_problem(response, 409, "request_in_progress")
    assert await stock_of(shop, beans["id"]) == 8
    assert await count_records(shop) == 1


# --- What is stored, and what frees the key (CON-06) ----------------------------------------------


async def test_a_business_refusal_is_replayed_even_after_stock_is_added(
    shop: Shop, staff: Account, customer: Account
) -> None:
    scarce = await create_product(shop, staff.headers, stock=1)
    first = await order(shop, keyed(customer, "checkout-1"), two_of(scarce))
    assert assert_problem(first, 409, "insufficient_stock")["available"] == 1
    path = f"/api/v1/products/{scarce['id']}"
    restock = await shop.client.patch(path, json={"stock": 10}, headers=staff.headers)
    assert restock.status_code == 200, restock.text

    retry = await order(shop, keyed(customer, "checkout-1"), two_of(scarce))

    assert retry.status_code == 409
    assert retry.headers[REPLAYED] == "true"
    assert retry.headers["content-type"] == first.headers["content-type"]
    replayed = assert_problem(retry, 409, "insufficient_stock")  # request_id is the retry's own
    assert {**replayed, "request_id": None} == {**first.json(), "request_id": None}
    assert await orders_of(shop, customer) == []
    assert await stock_of(shop, scarce["id"]) == 10


@pytest.mark.parametrize(
    ("failing_line", "code"),
    [
        ({"quantity": 0}, "validation_error"),
        ({"product_id": str(uuid.uuid4())}, "product_unavailable"),
    ],
    ids=["invalid body", "unknown product"],
)
async def test_a_422_is_not_stored_so_the_key_then_works_with_a_valid_body(
    shop: Shop, customer: Account, beans: dict[str, Any], failing_line: dict[str, Any], code: str
) -> None:
    refused_items = [{**two_of(beans)[0], **failing_line}]
    refused = await order(shop, keyed(customer, "checkout-1"), refused_items)
    assert_problem(refused, 422, code)
    assert await record_of(shop, customer, "checkout-1") is None

    response = await order(shop, keyed(customer, "checkout-1"), two_of(beans))

    assert response.status_code == 201, response.text
    assert REPLAYED not in response.headers
    assert len(await orders_of(shop, customer)) == 1
    assert await stock_of(shop, beans["id"]) == 8


@pytest.mark.parametrize("key", ["", "k" * 256, "two words"], ids=["empty", "256 chars", "space"])
async def test_a_malformed_key_is_422_and_places_nothing(
    shop: Shop, customer: Account, beans: dict[str, Any], key: str
) -> None:
    response = await order(shop, keyed(customer, key), two_of(beans))

    body = assert_problem(response, 422, "validation_error")
    assert ["header", "idempotency-key"] in [error["loc"] for error in body["errors"]]
    assert await orders_of(shop, customer) == []
    assert await stock_of(shop, beans["id"]) == 10


async def test_a_key_of_255_printable_characters_is_accepted(
    shop: Shop, customer: Account, beans: dict[str, Any]
) -> None:
    response = await order(shop, keyed(customer, "k" * 254 + "~"), two_of(beans))
    assert response.status_code == 201, response.text


# --- Expiry and abandoned claims ------------------------------------------------------------------


async def an_expired_order(
    shop: Shop,
    customer: Account,
    beans: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    next_purge: float,
) -> dict[str, Any]:
    """An order placed with key checkout-1, whose record has then expired."""
    first = await order(shop, keyed(customer, "checkout-1"), two_of(beans))
    assert first.status_code == 201, first.text
    async with sessions(shop)() as session:
        await session.execute(
            update(IdempotencyRecord).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
    monkeypatch.setattr(idempotency, "_next_purge", next_purge)
    placed: dict[str, Any] = first.json()
    return placed


async def test_expired_records_are_purged_by_a_claim_once_a_minute(
    shop: Shop, customer: Account, beans: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # This process's purge is due.
    await an_expired_order(shop, customer, beans, monkeypatch, next_purge=0.0)

    unrelated = await order(shop, keyed(customer, "checkout-2"), two_of(beans))

    assert unrelated.status_code == 201, unrelated.text
    assert await record_of(shop, customer, "checkout-1") is None
    assert idempotency._next_purge > 0.0


async def test_an_expired_key_is_free_again_without_waiting_for_the_purge(
    shop: Shop, customer: Account, beans: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No purge: the claim itself takes the expired record over.
    first = await an_expired_order(shop, customer, beans, monkeypatch, next_purge=math.inf)

    again = await order(shop, keyed(customer, "checkout-1"), two_of(beans))

    assert again.status_code == 201, again.text
    assert REPLAYED not in again.headers
    assert again.json()["id"] != first["id"]
    record = await record_of(shop, customer, "checkout-1")
    assert record is not None
    assert record.response_body is not None
    assert record.response_body["id"] == again.json()["id"]
    assert len(await orders_of(shop, customer)) == 2
    assert await stock_of(shop, beans["id"]) == 6


@pytest.mark.parametrize(
    ("age", "taken_over"),
    [(timedelta(minutes=2), True), (timedelta(0), False)],
    ids=["abandoned two minutes ago", "claimed just now"],
)
async def test_a_claim_without_outcome_is_taken_over_once_it_is_abandoned(
    shop: Shop, customer: Account, beans: dict[str, Any], age: timedelta, taken_over: bool
) -> None:
    # The fingerprint of this body, as the app stores it, read from a record made with another key.
    probe = await order(shop, keyed(customer, "probe"), two_of(beans))
    assert probe.status_code == 201, probe.text
    probe_record = await record_of(shop, customer, "probe")
    assert probe_record is not None
    claimed_at = datetime.now(UTC) - age
    async with sessions(shop)() as session:
        session.add(
            IdempotencyRecord(
                user_id=customer.id,
                key="checkout-1",
                request_hash=probe_record.request_hash,
                response_status=None,
                response_body=None,
                created_at=claimed_at,
                expires_at=claimed_at + timedelta(hours=24),
            )
        )
        await session.commit()

    response = await order(shop, keyed(customer, "checkout-1"), two_of(beans))

    placed = await orders_of(shop, customer)
    record = await record_of(shop, customer, "checkout-1")
    assert record is not None
    if taken_over:
        assert response.status_code == 201, response.text
        assert REPLAYED not in response.headers
        assert len(placed) == 2
        assert record.response_status == 201
        assert await stock_of(shop, beans["id"]) == 6
    else:
        assert_problem(response, 409, "request_in_progress")
        assert len(placed) == 1
        assert record.response_status is None
        assert await stock_of(shop, beans["id"]) == 8
