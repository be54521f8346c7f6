"""GET /orders: whose orders each caller sees, filters, order, pages, and a bounded query count.

A customer's list never shows another's order, whatever the query says (reliability.md API-02);
bad paging or filter values are refused (API-09).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from order_api.users.models import Role
from tests.accounts import Account, Shop
from tests.catalogue import create_product
from tests.catalogue import submit_order as order
from tests.test_errors import assert_problem

ORDERS = "/api/v1/orders"


async def place_orders(
    shop: Shop, customer: Account, products: list[dict[str, Any]], count: int
) -> list[str]:
    """`count` orders of one unit of each product, oldest first."""
    items = [{"product_id": product["id"], "quantity": 1} for product in products]
    ids = []
    for _ in range(count):
        response = await order(shop, customer.headers, items)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def list_orders(shop: Shop, account: Account, **query: Any) -> dict[str, Any]:
    response = await shop.client.get(ORDERS, params=query, headers=account.headers)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def ids_of(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["items"]]


@pytest.fixture
async def product(shop: Shop, staff: Account) -> dict[str, Any]:
    return await create_product(shop, staff.headers, stock=1000)


# --- Whose orders (reliability.md API-02) -------------------------------------------------------


async def test_a_customer_sees_only_their_own_orders_whatever_the_query_says(
    shop: Shop, product: dict[str, Any]
) -> None:
    alice, bob = await shop.account(Role.CUSTOMER), await shop.account(Role.CUSTOMER)
    alices = await place_orders(shop, alice, [product], 3)
    bobs = await place_orders(shop, bob, [product], 3)

    queries: list[dict[str, Any]] = [
        {},
        {"customer_id": str(alice.id)},
        {"customer_id": str(alice.id), "page_size": 100},
        {"status": "PENDING"},
    ]
    for query in queries:
        page = await list_orders(shop, bob, **query)
        # The customer_id filter is for staff: a customer's own orders are all they ever get.
        assert (sorted(ids_of(page)), page["total"]) == (sorted(bobs), 3), query
        assert not set(ids_of(page)) & set(alices), query
        assert {item["customer_id"] for item in page["items"]} == {str(bob.id)}


async def test_staff_see_everyones_orders_and_filter_them_by_customer(
    shop: Shop, staff: Account, product: dict[str, Any]
) -> None:
    alice, bob = await shop.account(Role.CUSTOMER), await shop.account(Role.CUSTOMER)
    alices = await place_orders(shop, alice, [product], 3)
    bobs = await place_orders(shop, bob, [product], 2)
    admin = await shop.account(Role.ADMIN)

    for viewer in (staff, admin):
        everyone = await list_orders(shop, viewer)
        assert (sorted(ids_of(everyone)), everyone["total"]) == (sorted(alices + bobs), 5)
        only_alice = await list_orders(shop, viewer, customer_id=str(alice.id))
        assert (sorted(ids_of(only_alice)), only_alice["total"]) == (sorted(alices), 3)
        nobody = await list_orders(shop, viewer, customer_id=str(uuid.uuid4()))
        assert (nobody["items"], nobody["total"]) == ([], 0)


async def test_the_status_filter_keeps_only_orders_in_that_status(
    shop: Shop, staff: Account, product: dict[str, Any]
) -> None:
    customer = await shop.account(Role.CUSTOMER)
    paid, cancelled, *pending = await place_orders(shop, customer, [product], 4)
    moves = [(paid, "PAID"), (cancelled, "CANCELLED")]
    for order_id, status in moves:
        response = await shop.client.post(
            f"{ORDERS}/{order_id}/status", json={"status": status}, headers=staff.headers
        )
        assert response.status_code == 200, response.text

    expected = {"PENDING": pending, "PAID": [paid], "CANCELLED": [cancelled], "SHIPPED": []}
    for viewer in (customer, staff):
        for status, order_ids in expected.items():
            page = await list_orders(shop, viewer, status=status)
            assert (sorted(ids_of(page)), page["total"]) == (sorted(order_ids), len(order_ids))
            assert {item["status"] for item in page["items"]} <= {status}


# --- Order and pages ----------------------------------------------------------------------------


async def test_newest_first_in_pages_that_all_count_the_same_total(
    shop: Shop, product: dict[str, Any]
) -> None:
    customer = await shop.account(Role.CUSTOMER)
    newest_first = (await place_orders(shop, customer, [product], 5))[::-1]

    assert ids_of(await list_orders(shop, customer, page_size=100)) == newest_first
    pages = [await list_orders(shop, customer, page=page, page_size=2) for page in (1, 2, 3, 4)]
    assert [len(page["items"]) for page in pages] == [2, 2, 1, 0]
    assert {page["total"] for page in pages} == {5}
    assert [(page["page"], page["page_size"]) for page in pages] == [(n, 2) for n in (1, 2, 3, 4)]
    assert [order_id for page in pages for order_id in ids_of(page)] == newest_first


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"page_size": 0}, "page_size"),
        ({"page_size": 101}, "page_size"),
        ({"page": 0}, "page"),
        ({"status": "UNKNOWN"}, "status"),
        ({"customer_id": "not-a-uuid"}, "customer_id"),
    ],
)
async def test_an_invalid_query_is_422_naming_the_parameter(
    shop: Shop, staff: Account, query: dict[str, Any], field: str
) -> None:
    response = await shop.client.get(ORDERS, params=query, headers=staff.headers)
    body = assert_problem(response, 422, "validation_error")
    assert ["query", field] in [error["loc"] for error in body["errors"]]


# --- Statement count ----------------------------------------------------------------------------

# Set while the request under test runs: tasks it starts inherit it, the app's background job
# runner (which polls the same engine) does not, so only the request's own statements count.
_COUNTING: ContextVar[list[str] | None] = ContextVar("counting_statements", default=None)


def _record_statement(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    statements = _COUNTING.get()
    if statements is not None:
        statements.append(statement)


@contextmanager
def statements_run(engine: Engine) -> Iterator[list[str]]:
    """The SQL statements run on `engine` by code called inside the `with` block."""
    statements: list[str] = []
    token = _COUNTING.set(statements)
    event.listen(engine, "before_cursor_execute", _record_statement)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", _record_statement)
        _COUNTING.reset(token)


async def test_the_number_of_statements_does_not_grow_with_the_page_size(
    shop: Shop, staff: Account
) -> None:
    products = [await create_product(shop, staff.headers, stock=100) for _ in range(3)]
    customer = await shop.account(Role.CUSTOMER)
    await place_orders(shop, customer, products, 5)
    engine: Engine = shop.app.state.engine.sync_engine

    counts = {}
    for page_size in (1, 100):
        with statements_run(engine) as statements:
            page = await list_orders(shop, staff, page_size=page_size)
        assert len(page["items"]) == min(page_size, 5)
        assert all(len(item["lines"]) == 3 for item in page["items"])
        counts[page_size] = len(statements)

    assert counts[1] > 0
    assert counts[1] == counts[100], counts
