"""The order lifecycle as data: which status may follow which, and what a customer may do."""

from __future__ import annotations

from collections.abc import Mapping

from order_api.orders.models import OrderStatus
from order_api.platform.errors import Conflict

PENDING, PAID, SHIPPED, DELIVERED, CANCELLED = (
    OrderStatus.PENDING,
    OrderStatus.PAID,
    OrderStatus.SHIPPED,
    OrderStatus.DELIVERED,
    OrderStatus.CANCELLED,
)

TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    PENDING: frozenset({PAID, CANCELLED}),
    PAID: frozenset({SHIPPED, CANCELLED}),
    SHIPPED: frozenset({DELIVERED}),
    DELIVERED: frozenset(),
    CANCELLED: frozenset(),
}
# Staff may cancel from any status TRANSITIONS allows; a customer only before payment.
CUSTOMER_CANCELLABLE = frozenset({PENDING})


class InvalidTransition(Conflict):
    code, title = "invalid_transition", "Invalid status transition"


def check_transition(current: OrderStatus, target: OrderStatus) -> None:
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(f"An order cannot go from {current} to {target}.")
