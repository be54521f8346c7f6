"""Live order events: written to the outbox with the change, published after it commits.

An event raised while the pub-sub is down waits in the outbox and is published when it returns.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from order_api.adapters.pubsub import PubSub
from order_api.jobs import outbox
from order_api.jobs.outbox import ClaimedMessage
from order_api.orders.models import OrderStatus

ORDER_EVENT_KIND = "order.event"
ORDERS_CHANNEL = "orders"


async def queue_order_event(
    session: AsyncSession,
    order_id: uuid.UUID,
    customer_id: uuid.UUID,
    status: OrderStatus,
    previous_status: OrderStatus | None,
    at: datetime,
) -> None:
    payload = {
        "order_id": str(order_id),
        "customer_id": str(customer_id),
        "status": status.value,
        "previous_status": previous_status.value if previous_status else None,
        "at": at.isoformat(),
    }
    await outbox.enqueue(session, ORDER_EVENT_KIND, payload)


class OrderEventPublisher:
    """The outbox handler: one event, published to every process's subscribers."""

    def __init__(self, pubsub: PubSub) -> None:
        self.pubsub = pubsub

    async def __call__(self, message: ClaimedMessage) -> None:
        await self.pubsub.publish(ORDERS_CHANNEL, json.dumps(message.payload).encode())
