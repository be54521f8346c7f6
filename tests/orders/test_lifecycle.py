"""An order's life after it is placed: staff moves, cancelling, its history and status e-mails.

The lifecycle table is written out here from SPEC, not imported from the code under test. Every
refusal is checked in the database too: the status, the stock and the history stay as they were.
Races check exact counts (reliability.md CON-03); hiding others' orders is API-01.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import select

from order_api.jobs.models import OutboxMessage
from order_api.orders.models import Order, OrderEvent
from order_api.users.models import Role
from tests.accounts import Account, Shop, ShopFactory
from tests.catalogue import create_product, product_row, sessions, stock_of
from tests.catalogue import submit_order as order
from tests.mailbox import delivered, plain_text
from tests.test_errors import assert_problem
from tests.waiting import wait_until

ORDERS = "/api/v1/orders"
STATUSES = ("PENDING", "PAID", "SHIPPED", "DELIVERED", "CANCELLED")
PENDING, PAID, SHIPPED, DELIVERED, CANCELLED = STATUSES
ALLOWED_MOVES = {
    (PENDING, PAID),
    (PAID, SHIPPED),
    (SHIPPED, DELIVERED),
    (PENDING, CANCELLED),
    (PAID, CANCELLED),
}
# The staff moves that take a new order to each status.
ROUTE_TO = {
    PENDING: (),
    PAID: (PAID,),
    SHIPPED: (PAID, SHIPPED),
    DELIVERED: (PAID, SHIPPED, DELIVERED),
    CANCELLED: (CANCELLED,),
}
STOCK = 10
QUANTITY = 2


# --- Helpers ------------------------------------------------------------------------------------


async def status_of(shop: Shop, order_id: str) -> str:
    async with sessions(shop)() as session:
        row = await session.get(Order, uuid.UUID(order_id))
    assert row is not None
    return row.status.value


async def history_of(shop: Shop, order_id: str) -> list[tuple[str | None, str]]:
    """The order's (from, to) steps as stored, oldest first."""
    async with sessions(shop)() as session:
        events = await session.scalars(
            select(OrderEvent)
            .where(OrderEvent.order_id == uuid.UUID(order_id))
            .order_by(OrderEvent.at, OrderEvent.id)
        )
        return [(e.from_status.value if e.from_status else None, e.to_status) for e in events]


async def status_emails_queued(shop: Shop, order_id: str) -> int:
    async with sessions(shop)() as session:
        messages = await session.scalars(select(OutboxMessage))
        return sum(
            1
            for message in messages
            if message.payload.get("template") == "order_status_changed"
            and message.payload["context"]["order_number"] == order_id[:8].upper()
        )


async def place_order(shop: Shop, customer: Account, product_id: str) -> str:
    response = await order(
        shop, customer.headers, [{"product_id": product_id, "quantity": QUANTITY}]
    )
    assert response.status_code == 201, response.text
    order_id: str = response.json()["id"]
    return order_id


async def change_status(
    shop: Shop, headers: dict[str, str], order_id: str, status: str
) -> httpx2.Response:
    return await shop.client.post(
        f"{ORDERS}/{order_id}/status", json={"status": status}, headers=headers
    )


async def cancel(shop: Shop, headers: dict[str, str], order_id: str) -> httpx2.Response:
    return await shop.client.post(f"{ORDERS}/{order_id}/cancel", headers=headers)


async def bring_to(shop: Shop, staff: Account, order_id: str, status: str) -> None:
    for step in ROUTE_TO[status]:
        response = await change_status(shop, staff.headers, order_id, step)
        assert response.status_code == 200, response.text


@pytest.fixture
async def product(shop: Shop, staff: Account) -> dict[str, Any]:
    return await create_product(shop, staff.headers, stock=STOCK)


@pytest.fixture
async def order_id(shop: Shop, customer: Account, product: dict[str, Any]) -> str:
    """A PENDING order of `customer` for QUANTITY units of `product`."""
    return await place_order(shop, customer, product["id"])


# --- Staff moves --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "target"),
    list(itertools.product(STATUSES, repeat=2)),
    ids=[f"{a}->{b}" for a, b in itertools.product(STATUSES, repeat=2)],
)
async def test_staff_move_an_order_exactly_as_the_lifecycle_allows(
    shop: Shop,
    staff: Account,
    product: dict[str, Any],
    order_id: str,
    current: str,
    target: str,
) -> None:
    await bring_to(shop, staff, order_id, current)
    stock_before = await stock_of(shop, product["id"])
    history_before = await history_of(shop, order_id)

    response = await change_status(shop, staff.headers, order_id, target)

    if (current, target) in ALLOWED_MOVES:
        assert response.status_code == 200, response.text
        assert response.json()["status"] == target
        assert await status_of(shop, order_id) == target
        assert await history_of(shop, order_id) == [*history_before, (current, target)]
        returned = QUANTITY if target == CANCELLED else 0
        assert await stock_of(shop, product["id"]) == stock_before + returned
    else:
        assert_problem(response, 409, "invalid_transition")
        assert await status_of(shop, order_id) == current
        assert await history_of(shop, order_id) == history_before
        assert await stock_of(shop, product["id"]) == stock_before


async def test_a_customer_may_not_move_even_their_own_order(
    shop: Shop, customer: Account, order_id: str
) -> None:
    response = await change_status(shop, customer.headers, order_id, PAID)
    assert_problem(response, 403, "forbidden")
    assert await status_of(shop, order_id) == PENDING


# --- Cancelling ---------------------------------------------------------------------------------


async def test_the_owner_cancels_a_pending_order_and_its_stock_goes_back_on_sale(
    shop: Shop, customer: Account, product: dict[str, Any], order_id: str
) -> None:
    assert await stock_of(shop, product["id"]) == STOCK - QUANTITY
    assert (await product_row(shop, product["id"])).units_sold == QUANTITY

    response = await cancel(shop, customer.headers, order_id)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == CANCELLED
    assert await status_of(shop, order_id) == CANCELLED
    assert await stock_of(shop, product["id"]) == STOCK
    assert (await product_row(shop, product["id"])).units_sold == 0


@pytest.mark.parametrize("current", [PAID, SHIPPED, DELIVERED])
async def test_the_owner_cannot_cancel_once_the_order_is_paid(
    shop: Shop,
    staff: Account,
    customer: Account,
    product: dict[str, Any],
    order_id: str,
    current: str,
) -> None:
    await bring_to(shop, staff, order_id, current)

    assert_problem(await cancel(shop, customer.headers, order_id), 409, "invalid_transition")

    assert await status_of(shop, order_id) == current
    assert await stock_of(shop, product["id"]) == STOCK - QUANTITY


@pytest.mark.parametrize("current", [PENDING, PAID])
async def test_staff_cancel_a_pending_or_paid_order_and_its_stock_goes_back(
    shop: Shop, staff: Account, product: dict[str, Any], order_id: str, current: str
) -> None:
    await bring_to(shop, staff, order_id, current)

    response = await cancel(shop, staff.headers, order_id)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == CANCELLED
    assert await status_of(shop, order_id) == CANCELLED
    assert await stock_of(shop, product["id"]) == STOCK
    assert (await product_row(shop, product["id"])).units_sold == 0


@pytest.mark.parametrize("current", [SHIPPED, DELIVERED])
async def test_staff_cannot_cancel_a_shipped_order(
    shop: Shop, staff: Account, product: dict[str, Any], order_id: str, current: str
) -> None:
    await bring_to(shop, staff, order_id, current)

    assert_problem(await cancel(shop, staff.headers, order_id), 409, "invalid_transition")

    assert await status_of(shop, order_id) == current
    assert await stock_of(shop, product["id"]) == STOCK - QUANTITY


@pytest.mark.parametrize("canceller", ["owner", "staff"])
async def test_cancelling_twice_is_refused_and_returns_the_stock_once(
    shop: Shop,
    staff: Account,
    customer: Account,
    product: dict[str, Any],
    order_id: str,
    canceller: str,
) -> None:
    headers = customer.headers if canceller == "owner" else staff.headers
    assert (await cancel(shop, headers, order_id)).status_code == 200

    assert_problem(await cancel(shop, headers, order_id), 409, "invalid_transition")

    assert await status_of(shop, order_id) == CANCELLED
    assert await stock_of(shop, product["id"]) == STOCK
    assert (await product_row(shop, product["id"])).units_sold == 0
    assert await history_of(shop, order_id) == [(None, PENDING), (PENDING, CANCELLED)]


# --- Someone else's order (reliability.md API-01) -----------------------------------------------


def without_request_id(response: httpx2.Response) -> bytes:
    request_id = response.json()["request_id"]
    return response.content.replace(request_id.encode(), b"<request id>")


@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", ""), ("GET", "/events"), ("POST", "/cancel")]
)
async def test_another_customer_gets_the_same_404_as_for_an_order_that_does_not_exist(
    shop: Shop, product: dict[str, Any], order_id: str, method: str, suffix: str
) -> None:
    stranger = await shop.account(Role.CUSTOMER)

    theirs = await shop.client.request(
        method, f"{ORDERS}/{order_id}{suffix}", headers=stranger.headers
    )
    missing = await shop.client.request(
        method, f"{ORDERS}/{uuid.uuid4()}{suffix}", headers=stranger.headers
    )

    assert_problem(theirs, 404, "not_found")
    assert_problem(missing, 404, "not_found")
    assert without_request_id(theirs) == without_request_id(missing)
    assert await status_of(shop, order_id) == PENDING
    assert await stock_of(shop, product["id"]) == STOCK - QUANTITY
    assert await history_of(shop, order_id) == [(None, PENDING)]


# --- Races (reliability.md CON-03) --------------------------------------------------------------


async def test_of_ten_concurrent_payments_on_two_apps_exactly_one_wins(
    shop: Shop, make_shop: ShopFactory, staff: Account, product: dict[str, Any], order_id: str
) -> None:
    other_app = await make_shop()

    responses = await asyncio.gather(
        *(
            change_status(shop if index % 2 else other_app, staff.headers, order_id, PAID)
            for index in range(10)
        )
    )

    assert Counter(response.status_code for response in responses) == {200: 1, 409: 9}
    refusals = {response.json()["code"] for response in responses if response.status_code == 409}
    assert refusals == {"invalid_transition"}
    assert await status_of(shop, order_id) == PAID
    assert await history_of(shop, order_id) == [(None, PENDING), (PENDING, PAID)]
    assert await stock_of(shop, product["id"]) == STOCK - QUANTITY
    assert await status_emails_queued(shop, order_id) == 1


async def test_of_ten_concurrent_cancels_on_two_apps_one_wins_and_stock_returns_once(
    shop: Shop, make_shop: ShopFactory, staff: Account, product: dict[str, Any], order_id: str
) -> None:
    other_app = await make_shop()

    responses = await asyncio.gather(
        *(cancel(shop if index % 2 else other_app, staff.headers, order_id) for index in range(10))
    )

    assert Counter(response.status_code for response in responses) == {200: 1, 409: 9}
    refusals = {response.json()["code"] for response in responses if response.status_code == 409}
    assert refusals == {"invalid_transition"}
    assert await status_of(shop, order_id) == CANCELLED
    assert await history_of(shop, order_id) == [(None, PENDING), (PENDING, CANCELLED)]
    assert await stock_of(shop, product["id"]) == STOCK
    assert (await product_row(shop, product["id"])).units_sold == 0
    assert await status_emails_queued(shop, order_id) == 1


# --- History and e-mails ------------------------------------------------------------------------


async def test_the_history_names_who_moved_the_order_from_which_status_to_which(
    shop: Shop, staff: Account, customer: Account, order_id: str
) -> None:
    admin = await shop.account(Role.ADMIN)
    moves = [(staff, PAID), (admin, SHIPPED), (staff, DELIVERED)]
    for actor, status in moves:
        assert (await change_status(shop, actor.headers, order_id, status)).status_code == 200
    expected = [
        (None, PENDING, str(customer.id)),
        (PENDING, PAID, str(staff.id)),
        (PAID, SHIPPED, str(admin.id)),
        (SHIPPED, DELIVERED, str(staff.id)),
    ]

    for reader in (customer, staff):
        response = await shop.client.get(f"{ORDERS}/{order_id}/events", headers=reader.headers)
        assert response.status_code == 200, response.text
        events = response.json()
        steps = [(event["from_status"], event["to_status"], event["actor_id"]) for event in events]
        assert steps == expected
        moments = [datetime.fromisoformat(event["at"]) for event in events]
        assert moments == sorted(moments)
        assert all(moment.utcoffset() is not None for moment in moments)


async def test_the_history_of_an_order_its_owner_cancelled_names_the_owner(
    shop: Shop, customer: Account, order_id: str
) -> None:
    assert (await cancel(shop, customer.headers, order_id)).status_code == 200
    response = await shop.client.get(f"{ORDERS}/{order_id}/events", headers=customer.headers)
    assert response.status_code == 200, response.text
    last = response.json()[-1]
    assert (last["from_status"], last["to_status"], last["actor_id"]) == (
        PENDING,
        CANCELLED,
        str(customer.id),
    )


@pytest.mark.parametrize("journey", [(PAID, SHIPPED, DELIVERED), (PAID, CANCELLED)])
async def test_each_move_sends_the_customer_an_email_naming_the_new_status(
    shop: Shop, staff: Account, customer: Account, order_id: str, journey: tuple[str, ...]
) -> None:
    for status in journey:
        assert (await change_status(shop, staff.headers, order_id, status)).status_code == 200
    directory: Path = shop.app.state.settings.data_dir / "mail"
    number = order_id[:8].upper()

    await wait_until(
        lambda: len(delivered(directory, customer.email, "is now")) >= len(journey),
        "a status e-mail for each move",
    )

    messages = delivered(directory, customer.email, "is now")
    assert sorted(str(message["Subject"]) for message in messages) == sorted(
        f"Your order {number} is now {status}" for status in journey
    )
    previous = (PENDING, *journey[:-1])
    texts = [plain_text(message) for message in messages]
    for before, after in zip(previous, journey, strict=True):
        assert any(f"from {before} to {after}" in text for text in texts), (before, after, texts)
