"""Stock and the lifecycle under random sequences of orders, cancels, moves and restocks
through the HTTP API. For every product, at every step: its stock plus what
the orders that are not cancelled hold equals its starting stock plus what staff added. Every
order's history follows the transition table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from order_api.orders.lifecycle import TRANSITIONS
from order_api.orders.models import OrderStatus
from order_api.users.models import Role
from tests.accounts import Account, Shop
from tests.catalogue import PRODUCTS, create_product, order

PRODUCT_COUNT, CUSTOMER_COUNT, STARTING_STOCK = 2, 2, 4

place = st.tuples(
    st.just("place"),
    st.integers(0, CUSTOMER_COUNT - 1),
    st.integers(0, PRODUCT_COUNT - 1),
    st.integers(1, 3),
)
cancel = st.tuples(st.just("cancel"), st.integers(0, CUSTOMER_COUNT - 1), st.integers(0, 9))
move = st.tuples(st.just("move"), st.integers(0, 9), st.sampled_from(list(OrderStatus)))
restock = st.tuples(st.just("restock"), st.integers(0, PRODUCT_COUNT - 1), st.integers(1, 5))
STEPS = st.lists(st.one_of(place, cancel, move, restock), min_size=1, max_size=12)


@dataclass
class Ledger:
    """What the test knows: the products, each one's stock added by staff, the orders placed."""

    products: list[str]
    added: dict[str, int] = field(default_factory=dict)
    orders: list[tuple[Account, dict[str, Any]]] = field(default_factory=list)


async def held_by_orders(shop: Shop, staff: Account, ledger: Ledger) -> dict[str, int]:
    held = dict.fromkeys(ledger.products, 0)
    for _, placed in ledger.orders:
        current = await shop.client.get(f"/api/v1/orders/{placed['id']}", headers=staff.headers)
        if current.json()["status"] != OrderStatus.CANCELLED:
            for line in current.json()["lines"]:
                held[line["product_id"]] += line["quantity"]
    return held


async def assert_stock_balances(shop: Shop, staff: Account, ledger: Ledger) -> None:
    held = await held_by_orders(shop, staff, ledger)
    for product_id in ledger.products:
        stock = (await shop.client.get(f"{PRODUCTS}/{product_id}")).json()["stock"]
        assert stock + held[product_id] == STARTING_STOCK + ledger.added.get(product_id, 0)


async def assert_histories_follow_the_table(shop: Shop, ledger: Ledger) -> None:
    for customer, placed in ledger.orders:
        events = await shop.client.get(
            f"/api/v1/orders/{placed['id']}/events", headers=customer.headers
        )
        steps = [(event["from_status"], event["to_status"]) for event in events.json()]
        assert steps[0] == (None, OrderStatus.PENDING)
        for before, after in steps[1:]:
            assert OrderStatus(after) in TRANSITIONS[OrderStatus(before)], steps


async def run_step(
    shop: Shop, staff: Account, customers: list[Account], ledger: Ledger, step: tuple[Any, ...]
) -> None:
    kind, *args = step
    if kind == "place":
        customer, product = customers[args[0]], ledger.products[args[1]]
        placed = await order(shop, customer.headers, [(product, args[2])])
        assert placed.status_code in {201, 409}, placed.text  # 409: not enough stock
        if placed.status_code == 201:
            ledger.orders.append((customer, placed.json()))
    elif kind == "cancel" and ledger.orders:
        customer, placed = ledger.orders[args[1] % len(ledger.orders)]
        acting = customers[args[0]]
        cancelled = await shop.client.post(
            f"/api/v1/orders/{placed['id']}/cancel", headers=acting.headers
        )
        # Another customer's order is not found; a paid one cannot be cancelled by its owner.
        assert cancelled.status_code in {200, 404, 409}, cancelled.text
        assert acting is customer or cancelled.status_code == 404
    elif kind == "move" and ledger.orders:
        _, placed = ledger.orders[args[0] % len(ledger.orders)]
        moved = await shop.client.post(
            f"/api/v1/orders/{placed['id']}/status",
            json={"status": args[1]},
            headers=staff.headers,
        )
        assert moved.status_code in {200, 409}, moved.text
    elif kind == "restock":
        product = ledger.products[args[0]]
        stock = (await shop.client.get(f"{PRODUCTS}/{product}")).json()["stock"]
        updated = await shop.client.patch(
            f"{PRODUCTS}/{product}", json={"stock": stock + args[1]}, headers=staff.headers
        )
        assert updated.status_code == 200, updated.text
        ledger.added[product] = ledger.added.get(product, 0) + args[1]


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI never meets a new one by chance
    database=None,  # nothing to remember between runs, so no .hypothesis/ directory
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=STEPS)
async def test_stock_balances_and_histories_follow_the_table(
    shop: Shop, steps: list[tuple[Any, ...]]
) -> None:
    staff = await shop.account(Role.STAFF)
    customers = [await shop.account() for _ in range(CUSTOMER_COUNT)]
    products = [
        (await create_product(shop, staff.headers, stock=STARTING_STOCK))["id"]
        for _ in range(PRODUCT_COUNT)
    ]
    ledger = Ledger(products)
    for step in steps:
        await run_step(shop, staff, customers, ledger, step)
        await assert_stock_balances(shop, staff, ledger)
    await assert_histories_follow_the_table(shop, ledger)
