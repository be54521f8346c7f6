"""Placing an order: the body it returns, every refusal, and stock under concurrent buyers.

A refused order leaves no trace: stock, orders, lines, history, outbox and idempotency rows are
compared before and after. The races check exact counts in the database (reliability.md CON-01/02).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from order_api.jobs.models import OutboxMessage
from order_api.orders.models import IdempotencyRecord, Order, OrderEvent, OrderLine
from order_api.users.models import Role
from tests.accounts import Account, Shop, ShopFactory, bearer
from tests.catalogue import create_product, sessions, stock_of, units_sold
from tests.catalogue import submit_order as order
from tests.mailbox import delivered
from tests.test_errors import assert_problem
from tests.waiting import wait_until

ORDERS = "/api/v1/orders"
# Rows an order writes; a refused order must leave every one of these counts as it was.
ORDER_TABLES = (Order, OrderLine, OrderEvent, OutboxMessage, IdempotencyRecord)
# Sorts after every uuid4, so its line is reserved last (lines are reserved in product-id order).
LAST_UNKNOWN_ID = "ffffffff-ffff-4fff-bfff-ffffffffffff"


async def row_counts(shop: Shop) -> dict[str, int]:
    async with sessions(shop)() as session:
        return {
            model.__tablename__: await session.scalar(select(func.count()).select_from(model)) or 0
            for model in ORDER_TABLES
        }


async def customer_headers(shop: Shop) -> dict[str, str]:
    """A customer's bearer header, issued by the app's own token service (no login per buyer)."""
    user = await shop.create_user(Role.CUSTOMER)
    token = shop.app.state.tokens.issue_access(user.id, datetime.now(UTC)).token
    return bearer(token)


def error_locations(body: dict[str, Any]) -> dict[tuple[str | int, ...], str]:
    return {tuple(error["loc"]): error["type"] for error in body["errors"]}


# --- The order placed ---------------------------------------------------------------------------


async def test_order_lines_keep_the_order_sent_and_snapshot_name_and_price(
    shop: Shop, staff: Account, customer: Account
) -> None:
    made = [
        await create_product(shop, staff.headers, name=name, price_cents=price, stock=10)
        for name, price in (("Beans", 1999), ("Mug", 850), ("Filters", 5))
    ]
    # Newest id first: never the order the stock is reserved in, so the lines must keep ours.
    newest_first = sorted(made, key=lambda product: uuid.UUID(product["id"]), reverse=True)
    sent = list(zip(newest_first, (3, 1, 10), strict=True))
    items = [{"product_id": product["id"], "quantity": quantity} for product, quantity in sent]

    response = await order(shop, customer.headers, items, payment_method_id="pm_card_visa")

    assert response.status_code == 201, response.text
    placed = response.json()
    assert placed["status"] == "PENDING"
    assert placed["customer_id"] == str(customer.id)
    assert placed["currency"] == shop.app.state.settings.currency
    assert placed["payment_method_id"] == "pm_card_visa"
    assert placed["lines"] == [
        {
            "product_id": product["id"],
            "product_name": product["name"],
            "unit_price_cents": product["price_cents"],
            "quantity": quantity,
        }
        for product, quantity in sent
    ]
    assert placed["total_cents"] == sum(product["price_cents"] * qty for product, qty in sent)
    assert [await stock_of(shop, product["id"]) for product, _ in sent] == [7, 9, 0]
    assert [await units_sold(shop, product["id"]) for product, _ in sent] == [3, 1, 10]

    changed, _ = sent[0]
    renamed = {"name": "Renamed", "price_cents": changed["price_cents"] + 1}
    path = f"/api/v1/products/{changed['id']}"
    assert (await shop.client.patch(path, json=renamed, headers=staff.headers)).status_code == 200
    again = await shop.client.get(f"{ORDERS}/{placed['id']}", headers=customer.headers)
    assert again.status_code == 200
    assert again.json()["lines"] == placed["lines"]
    assert again.json()["total_cents"] == placed["total_cents"]


async def test_the_price_the_customer_saw_is_accepted_when_it_is_still_the_price(
    shop: Shop, staff: Account, customer: Account
) -> None:
    beans = await create_product(shop, staff.headers, price_cents=1999, stock=5)
    items = [{"product_id": beans["id"], "quantity": 2, "unit_price_cents": 1999}]
    response = await order(shop, customer.headers, items)
    assert response.status_code == 201, response.text
    assert response.json()["total_cents"] == 2 * 1999
    assert await stock_of(shop, beans["id"]) == 3


async def test_a_changed_price_is_refused_naming_the_product_and_reserves_nothing(
    shop: Shop, staff: Account, customer: Account
) -> None:
    beans = await create_product(shop, staff.headers, price_cents=1999, stock=5)
    before = await row_counts(shop)
    items = [{"product_id": beans["id"], "quantity": 2, "unit_price_cents": 1}]
    body = assert_problem(await order(shop, customer.headers, items), 409, "price_changed")
    assert body["product_id"] == beans["id"]
    assert body["unit_price_cents"] == 1999
    assert await stock_of(shop, beans["id"]) == 5
    assert await row_counts(shop) == before


async def test_an_unknown_product_is_unavailable_naming_its_line(
    shop: Shop, staff: Account, customer: Account
) -> None:
    beans = await create_product(shop, staff.headers, stock=5)
    unknown = str(uuid.uuid4())
    lines = [{"product_id": beans["id"], "quantity": 1}, {"product_id": unknown, "quantity": 1}]
    problem = assert_problem(await order(shop, customer.headers, lines), 422, "product_unavailable")
    assert problem["product_id"] == unknown
    assert [error["loc"] for error in problem["errors"]] == [["body", "items", 1, "product_id"]]
    assert await stock_of(shop, beans["id"]) == 5


async def test_an_inactive_product_is_unavailable_naming_it(
    shop: Shop, staff: Account, customer: Account
) -> None:
    beans = await create_product(shop, staff.headers, stock=5)
    path = f"/api/v1/products/{beans['id']}"
    assert (await shop.client.delete(path, headers=staff.headers)).status_code == 204
    response = await order(shop, customer.headers, [{"product_id": beans["id"], "quantity": 1}])
    assert assert_problem(response, 422, "product_unavailable")["product_id"] == beans["id"]
    assert await stock_of(shop, beans["id"]) == 5


async def test_insufficient_stock_names_the_product_and_what_is_available(
    shop: Shop, staff: Account, customer: Account
) -> None:
    beans = await create_product(shop, staff.headers, stock=3)
    response = await order(shop, customer.headers, [{"product_id": beans["id"], "quantity": 4}])
    body = assert_problem(response, 409, "insufficient_stock")
    assert body["product_id"] == beans["id"]
    assert body["available"] == 3
    assert await stock_of(shop, beans["id"]) == 3


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        ("insufficient_stock", 409, "insufficient_stock"),
        ("inactive", 422, "product_unavailable"),
        ("unknown", 422, "product_unavailable"),
        ("price_changed", 409, "price_changed"),
    ],
)
async def test_a_failing_second_line_rolls_back_the_first_and_writes_nothing(
    shop: Shop, staff: Account, customer: Account, failure: str, status: int, code: str
) -> None:
    # Lines are reserved in product-id order: the good line gets the lower id, so its stock was
    # really taken before the second line failed, and the rollback is what puts it back.
    made = [await create_product(shop, staff.headers, price_cents=500, stock=5) for _ in "ab"]
    good, bad = sorted(made, key=lambda product: uuid.UUID(product["id"]))
    second: dict[str, Any] = {"product_id": bad["id"], "quantity": 1}
    if failure == "insufficient_stock":
        second["quantity"] = 6
    elif failure == "inactive":
        path = f"/api/v1/products/{bad['id']}"
        assert (await shop.client.delete(path, headers=staff.headers)).status_code == 204
    elif failure == "unknown":
        second["product_id"] = LAST_UNKNOWN_ID
    else:
        second["unit_price_cents"] = 499
    before = await row_counts(shop)

    items = [{"product_id": good["id"], "quantity": 2}, second]
    body = assert_problem(await order(shop, customer.headers, items), status, code)

    assert body["product_id"] == second["product_id"]
    assert await stock_of(shop, good["id"]) == 5
    assert await units_sold(shop, good["id"]) == 0
    assert await stock_of(shop, bad["id"]) == 5
    assert await row_counts(shop) == before


# --- Input refused before anything is read ------------------------------------------------------


# "{product}" stands for the product each test creates; `fill_in_product` puts its id in.
def one_line(**line: Any) -> list[dict[str, Any]]:
    return [{"product_id": "{product}", "quantity": 1, **line}]


INVALID_BODIES: dict[str, tuple[dict[str, Any], tuple[str | int, ...], str | None]] = {
    # name: (changes to a valid body, the error's location, its type when it matters)
    "quantity 0": ({"items": one_line(quantity=0)}, ("body", "items", 0, "quantity"), None),
    "quantity -1": ({"items": one_line(quantity=-1)}, ("body", "items", 0, "quantity"), None),
    "quantity 101": ({"items": one_line(quantity=101)}, ("body", "items", 0, "quantity"), None),
    "quantity 2**63": (
        {"items": one_line(quantity=2**63)},
        ("body", "items", 0, "quantity"),
        None,
    ),
    "no lines": ({"items": []}, ("body", "items"), None),
    "51 lines": (
        {"items": [{"product_id": str(uuid.uuid4()), "quantity": 1} for _ in range(51)]},
        ("body", "items"),
        None,
    ),
    "one product twice": ({"items": one_line() + one_line()}, ("body", "items"), None),
    "no payment method": ({"payment_method_id": None}, ("body", "payment_method_id"), None),
    "payment method with a space": (
        {"payment_method_id": "pm card"},
        ("body", "payment_method_id"),
        None,
    ),
    "payment method of 65 characters": (
        {"payment_method_id": "p" * 65},
        ("body", "payment_method_id"),
        None,
    ),
    "total_cents": ({"total_cents": 1}, ("body", "total_cents"), "extra_forbidden"),
    "status": ({"status": "PAID"}, ("body", "status"), "extra_forbidden"),
    "customer_id": (
        {"customer_id": str(uuid.uuid4())},
        ("body", "customer_id"),
        "extra_forbidden",
    ),
    "a discount on a line": (
        {"items": one_line(discount=100)},
        ("body", "items", 0, "discount"),
        "extra_forbidden",
    ),
    "product id not a uuid": (
        {"items": one_line(product_id="beans")},
        ("body", "items", 0, "product_id"),
        None,
    ),
}


def fill_in_product(value: Any, product_id: str) -> Any:
    if isinstance(value, list):
        return [fill_in_product(item, product_id) for item in value]
    if isinstance(value, dict):
        return {key: fill_in_product(item, product_id) for key, item in value.items()}
    return product_id if value == "{product}" else value


@pytest.mark.parametrize("case", list(INVALID_BODIES))
async def test_invalid_input_is_422_naming_the_field_and_changes_nothing(
    shop: Shop, staff: Account, customer: Account, case: str
) -> None:
    changes, location, error_type = INVALID_BODIES[case]
    beans = await create_product(shop, staff.headers, stock=5)
    body: dict[str, Any] = {
        "items": [{"product_id": beans["id"], "quantity": 1}],
        "payment_method_id": "pm_card_visa",
        **fill_in_product(changes, beans["id"]),
    }
    body = {key: value for key, value in body.items() if value is not None}
    before = await row_counts(shop)

    response = await shop.client.post(ORDERS, json=body, headers=customer.headers)

    errors = error_locations(assert_problem(response, 422, "validation_error"))
    assert location in errors, errors
    if error_type is not None:
        assert errors[location] == error_type
    assert await stock_of(shop, beans["id"]) == 5
    assert await row_counts(shop) == before


async def test_an_anonymous_order_is_401(shop: Shop, staff: Account) -> None:
    beans = await create_product(shop, staff.headers, stock=5)
    response = await order(shop, {}, [{"product_id": beans["id"], "quantity": 1}])
    assert_problem(response, 401, "not_authenticated")
    assert await stock_of(shop, beans["id"]) == 5


# --- The confirmation e-mail --------------------------------------------------------------------


async def test_the_confirmation_email_names_the_order_number_and_total(
    shop: Shop, staff: Account, customer: Account
) -> None:
    beans = await create_product(shop, staff.headers, price_cents=1999, stock=5)
    response = await order(shop, customer.headers, [{"product_id": beans["id"], "quantity": 3}])
    assert response.status_code == 201, response.text
    number = response.json()["id"][:8].upper()
    directory: Path = shop.app.state.settings.data_dir / "mail"

    await wait_until(
        lambda: bool(delivered(directory, customer.email, "is confirmed")),
        "the confirmation e-mail",
    )

    [message] = delivered(directory, customer.email, "is confirmed")
    assert number in message["Subject"]
    part = message.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    text = part.get_content()
    assert number in text
    assert "59.97 EUR" in text


# --- Concurrent buyers (reliability.md CON-01, CON-02) --------------------------------------------


async def test_fifty_buyers_on_two_apps_get_exactly_the_seven_in_stock(
    shop: Shop, make_shop: ShopFactory, staff: Account
) -> None:
    other_app = await make_shop()
    beans = await create_product(shop, staff.headers, stock=7)
    buyers = [await customer_headers(shop) for _ in range(50)]
    items = [{"product_id": beans["id"], "quantity": 1}]

    responses = await asyncio.gather(
        *(
            order(shop if index % 2 else other_app, headers, items)
            for index, headers in enumerate(buyers)
        )
    )

    assert Counter(response.status_code for response in responses) == {201: 7, 409: 43}
    refusals = [response.json() for response in responses if response.status_code == 409]
    assert {(body["code"], body["available"]) for body in refusals} == {("insufficient_stock", 0)}
    assert await stock_of(shop, beans["id"]) == 0
    assert await units_sold(shop, beans["id"]) == 7
    assert (await row_counts(shop))["orders"] == 7
    assert (await row_counts(shop))["order_lines"] == 7


async def test_orders_listing_two_products_in_both_orders_never_deadlock(
    shop: Shop, make_shop: ShopFactory, staff: Account, customer: Account
) -> None:
    other_app = await make_shop()
    first = await create_product(shop, staff.headers, stock=5)
    second = await create_product(shop, staff.headers, stock=5)
    forwards = [{"product_id": product["id"], "quantity": 1} for product in (first, second)]
    backwards = forwards[::-1]

    responses = await asyncio.gather(
        *(
            order(shop if index % 2 else other_app, customer.headers, items)
            for index in range(10)
            for items in (forwards, backwards)
        )
    )

    assert Counter(response.status_code for response in responses) == {201: 5, 409: 15}
    refusals = {response.json()["code"] for response in responses if response.status_code == 409}
    assert refusals == {"insufficient_stock"}
    assert [await stock_of(shop, product["id"]) for product in (first, second)] == [0, 0]
    counts = await row_counts(shop)
    assert (counts["orders"], counts["order_lines"]) == (5, 10)


@pytest.mark.parametrize("quantity", [True, "1", 1.5], ids=["bool", "string", "fraction"])
async def test_a_quantity_must_be_a_json_integer(
    shop: Shop, staff: Account, customer: Account, quantity: Any
) -> None:
    beans = await create_product(shop, staff.headers, stock=5)
    response = await order(
        shop, customer.headers, [{"product_id": beans["id"], "quantity": quantity}]
    )
    assert_problem(response, 422, "validation_error")
    assert await stock_of(shop, beans["id"]) == 5


async def test_a_quantity_written_2_point_0_is_the_integer_2(
    shop: Shop, staff: Account, customer: Account
) -> None:
    """JSON Schema's `integer`, which the schema declares, includes 2.0."""
    beans = await create_product(shop, staff.headers, stock=5)
    response = await order(shop, customer.headers, [{"product_id": beans["id"], "quantity": 2.0}])
    assert response.status_code == 201, response.text
    assert response.json()["lines"][0]["quantity"] == 2
    assert await stock_of(shop, beans["id"]) == 3
