from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, WebSocket, status
from fastapi.responses import JSONResponse

from order_api.auth.dependencies import CurrentUser, StaffUser
from order_api.config import CurrencyDep
from order_api.orders import idempotency, service
from order_api.orders.schemas import (
    IdempotencyKey,
    OrderCreate,
    OrderEventRead,
    OrderPage,
    OrderQuery,
    OrderRead,
    StatusChange,
)
from order_api.orders.stream_socket import StreamServicesDep, serve_order_stream
from order_api.platform.db import SessionDep
from order_api.platform.errors import problem_responses
from order_api.platform.http import UniqueKeysRoute
from order_api.platform.limits import RateLimitsDep

router = APIRouter(prefix="/api/v1/orders", tags=["orders"], route_class=UniqueKeysRoute)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderRead,
    responses=problem_responses(401, 409, 429),
)
async def place_order(
    session: SessionDep,
    customer: CurrentUser,
    rate_limits: RateLimitsDep,
    currency: CurrencyDep,
    body: OrderCreate,
    idempotency_key: Annotated[IdempotencyKey | None, Header()] = None,
) -> JSONResponse:
    """Order products at the catalogue's prices. With an `Idempotency-Key`, a retry of the same
    body within 24 hours gets the first answer again (header `Idempotent-Replayed: true`).
    Orders are limited per customer, replays included (429 with `Retry-After`)."""
    outcome = await idempotency.submit_order(
        session, rate_limits, customer, body, idempotency_key, currency
    )
    return JSONResponse(
        outcome.body, outcome.status, headers=outcome.headers, media_type=outcome.media_type
    )


@router.get("", responses=problem_responses(401))
async def list_orders(
    session: SessionDep, viewer: CurrentUser, query: Annotated[OrderQuery, Query()]
) -> OrderPage:
    """Newest first: your own orders, or, for staff, everyone's (filter with `customer_id`)."""
    orders, total = await service.list_orders(session, viewer, query)
    items = [OrderRead.model_validate(order) for order in orders]
    return OrderPage(items=items, total=total, page=query.page, page_size=query.page_size)


# `:uuid`: "ws" is no id, so an HTTP request to the socket's path is a 404, not a bad id.
@router.get("/{order_id:uuid}", responses=problem_responses(401, 404))
async def read_order(session: SessionDep, viewer: CurrentUser, order_id: uuid.UUID) -> OrderRead:
    return OrderRead.model_validate(await service.get_order(session, viewer, order_id))


@router.post("/{order_id:uuid}/cancel", responses=problem_responses(401, 404, 409))
async def cancel_order(session: SessionDep, actor: CurrentUser, order_id: uuid.UUID) -> OrderRead:
    """Cancel: the customer while it is pending, staff until it ships. Stock is returned."""
    return OrderRead.model_validate(await service.cancel_order(session, actor, order_id))


@router.post("/{order_id:uuid}/status", responses=problem_responses(401, 403, 404, 409))
async def change_status(
    session: SessionDep, actor: StaffUser, order_id: uuid.UUID, body: StatusChange
) -> OrderRead:
    """Move an order: PENDING → PAID → SHIPPED → DELIVERED, or PENDING|PAID → CANCELLED."""
    order = await service.change_status(session, actor, order_id, body.status)
    return OrderRead.model_validate(order)


@router.get("/{order_id:uuid}/events", responses=problem_responses(401, 404))
async def order_events(
    session: SessionDep, viewer: CurrentUser, order_id: uuid.UUID
) -> list[OrderEventRead]:
    """The order's history, oldest first: who moved it, when, from which status to which."""
    events = await service.order_events(session, viewer, order_id)
    return [OrderEventRead.model_validate(event) for event in events]


@router.websocket("/ws")
async def watch_every_order(
    websocket: WebSocket, services: StreamServicesDep, token: str | None = None
) -> None:
    """Staff: every order's status changes, live. See docs/orders.md for frames and codes."""
    await serve_order_stream(websocket, services, token, customer=None)


@router.websocket("/ws/{customer_id}")
async def watch_customer_orders(
    websocket: WebSocket, services: StreamServicesDep, customer_id: str, token: str | None = None
) -> None:
    """One customer's order status changes, live: the customer themself, or staff."""
    # A str, not a UUID: the token is checked before the id's shape, and a bad id gets a code.
    await serve_order_stream(websocket, services, token, customer=customer_id)
