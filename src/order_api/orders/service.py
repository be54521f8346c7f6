"""Placing orders against stock, moving them through the lifecycle, and reading them back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from order_api.auth.service import Caller
from order_api.jobs import outbox
from order_api.notifications.emails import email_message
from order_api.orders import lifecycle, repository
from order_api.orders.events import order_event_message
from order_api.orders.models import Order, OrderEvent, OrderStatus
from order_api.orders.schemas import OrderCreate, OrderQuery, OrderRead
from order_api.platform.errors import Conflict, NotFound
from order_api.products import service as products_service
from order_api.users import service as users_service


class OrderNotFound(NotFound):
    # The same answer for someone else's order and for no order at all.
    default_detail = "No order with this id."


class PriceChanged(Conflict):
    code, title = "price_changed", "Price changed"


def naming_the_line(
    refusal: products_service.ProductUnavailable, data: OrderCreate
) -> products_service.ProductUnavailable:
    """Like every 422, the refusal names the field: the line of the product (decision 82)."""
    product_id = refusal.extra["product_id"]
    line = next(i for i, item in enumerate(data.items) if str(item.product_id) == product_id)
    location = ["body", "items", line, "product_id"]
    refusal.extra["errors"] = [{"loc": location, "msg": refusal.detail, "type": refusal.code}]
    return refusal


async def place_order(
    session: AsyncSession, customer: Caller, data: OrderCreate, currency: str
) -> OrderRead:
    """Reserve every line's stock, snapshot names and prices, record the order and its e-mail."""
    quantities = {item.product_id: item.quantity for item in data.items}
    try:
        reserved_lines = await products_service.reserve_stock(session, quantities)
    except products_service.ProductUnavailable as refusal:
        raise naming_the_line(refusal, data) from None
    reserved = {line.product_id: line for line in reserved_lines}
    for item in data.items:
        current = reserved[item.product_id].unit_price_cents
        if item.unit_price_cents is not None and item.unit_price_cents != current:
            raise PriceChanged(
                f"The price of {reserved[item.product_id].name!r} ({item.product_id}) is now "
                f"{current}, not {item.unit_price_cents}.",
                extra={"product_id": str(item.product_id), "unit_price_cents": current},
            )
    now = datetime.now(UTC)
    order_id = uuid.uuid4()
    lines = [
        {
            "id": uuid.uuid4(),
            "order_id": order_id,
            "position": position,
            "product_id": item.product_id,
            "product_name": reserved[item.product_id].name,
            "unit_price_cents": reserved[item.product_id].unit_price_cents,
            "quantity": item.quantity,
        }
        for position, item in enumerate(data.items)
    ]
    row = {
        "id": order_id,
        "customer_id": customer.id,
        "status": OrderStatus.PENDING,
        "total_cents": sum(
            reserved[item.product_id].unit_price_cents * item.quantity for item in data.items
        ),
        "currency": currency,
        "payment_method_id": data.payment_method_id,
        "created_at": now,
        "updated_at": now,
    }
    await repository.insert_order(session, row, lines)
    # The rows written are the snapshot the response is made of.
    order = OrderRead.model_validate({**row, "lines": lines})
    await _record_event(session, order.id, None, OrderStatus.PENDING, customer.id, now)
    await outbox.enqueue_all(
        session,
        [
            order_event_message(order.id, customer.id, order.status, None, now),
            email_message("order_confirmation", customer.email, _email_context(order)),
        ],
    )
    return order


async def change_status(
    session: AsyncSession, actor: Caller, order_id: uuid.UUID, target: OrderStatus
) -> Order:
    """Staff move an order along the lifecycle table."""
    order = await _visible_order(session, actor, order_id)
    return await _move(session, actor, order, target)


async def cancel_order(session: AsyncSession, actor: Caller, order_id: uuid.UUID) -> Order:
    """The customer while it is pending, staff until it ships; the stock goes back on sale."""
    order = await _visible_order(session, actor, order_id)
    if not actor.is_staff and order.status not in lifecycle.CUSTOMER_CANCELLABLE:
        raise lifecycle.InvalidTransition("Only a pending order can be cancelled by its customer.")
    return await _move(session, actor, order, OrderStatus.CANCELLED)


async def get_order(session: AsyncSession, viewer: Caller, order_id: uuid.UUID) -> Order:
    return await _visible_order(session, viewer, order_id)


async def list_orders(
    session: AsyncSession, viewer: Caller, query: OrderQuery
) -> tuple[list[Order], int]:
    """Newest first: a customer's own, whatever they filter by; anyone's for staff."""
    customer_id = query.customer_id if viewer.is_staff else viewer.id
    return await repository.order_page(session, query, customer_id=customer_id, status=query.status)


async def order_events(
    session: AsyncSession, viewer: Caller, order_id: uuid.UUID
) -> list[OrderEvent]:
    await _visible_order(session, viewer, order_id)
    return await repository.order_history(session, order_id)


async def _visible_order(session: AsyncSession, viewer: Caller, order_id: uuid.UUID) -> Order:
    order = await repository.order_with_lines(session, order_id)
    if order is None or not (viewer.is_staff or order.customer_id == viewer.id):
        raise OrderNotFound()
    return order


async def _move(session: AsyncSession, actor: Caller, order: Order, target: OrderStatus) -> Order:
    previous = order.status
    lifecycle.check_transition(previous, target)
    now = datetime.now(UTC)
    if not await repository.move_order(session, order, target, now):
        raise lifecycle.InvalidTransition("The order's status changed meanwhile; read it again.")
    if target is OrderStatus.CANCELLED:
        quantities = {line.product_id: line.quantity for line in order.lines}
        await products_service.release_stock(session, quantities)
    await _record_event(session, order.id, previous, target, actor.id, now)
    # The customer's address: their own when they act, else read (staff move their orders).
    if order.customer_id == actor.id:
        email = actor.email
    else:
        email = (await users_service.get_user(session, order.customer_id)).email
    context = {**_email_context(order), "previous_status": previous.value}
    await outbox.enqueue_all(
        session,
        [
            order_event_message(order.id, order.customer_id, target, previous, now),
            email_message("order_status_changed", email, context),
        ],
    )
    return order


async def _record_event(
    session: AsyncSession,
    order_id: uuid.UUID,
    previous: OrderStatus | None,
    target: OrderStatus,
    actor_id: uuid.UUID,
    at: datetime,
) -> None:
    event = {
        "id": uuid.uuid4(),
        "order_id": order_id,
        "from_status": previous,
        "to_status": target,
        "actor_id": actor_id,
        "at": at,
    }
    await repository.insert_order_event(session, event)


def _email_context(order: Order | OrderRead) -> dict[str, object]:
    # No customer name: an e-mail carries no text a registrant chose (decisions.md).
    return {
        "order_number": order_number(order.id),
        "status": order.status.value,
        "lines": [
            {
                "quantity": line.quantity,
                "name": line.product_name,
                "total": format_money(line.unit_price_cents * line.quantity, order.currency),
            }
            for line in order.lines
        ],
        "total": format_money(order.total_cents, order.currency),
    }


def order_number(order_id: uuid.UUID) -> str:
    """What a customer reads and quotes: the id's first eight characters."""
    return str(order_id)[:8].upper()


def format_money(cents: int, currency: str) -> str:
    return f"{cents // 100}.{cents % 100:02d} {currency}"
