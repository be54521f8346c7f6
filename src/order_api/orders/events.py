"""Live order events: written to the outbox with the change, published after it commits.

The relay of the process that committed publishes them itself, not through the job queue, where
they would wait behind e-mails. An event raised while the pub-sub is down waits in the outbox and
is published when it returns.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from order_api.jobs.delivery import Completion
from order_api.jobs.outbox import ClaimedMessage, NewMessage
from order_api.orders.models import OrderStatus
from order_api.platform.adapters import PubSub

ORDER_EVENT_KIND = "order.event"
ORDERS_CHANNEL = "orders"


def order_event_message(
    order_id: uuid.UUID,
    customer_id: uuid.UUID,
    status: OrderStatus,
    previous_status: OrderStatus | None,
    at: datetime,
) -> NewMessage:
    """The outbox message of one status change, for `outbox.enqueue_all` with the change's
    others."""
    payload = {
        "order_id": str(order_id),
        "customer_id": str(customer_id),
        "status": status.value,
        "previous_status": previous_status.value if previous_status else None,
        "at": at.isoformat(),
    }
    return NewMessage(ORDER_EVENT_KIND, payload)


class OrderEventPublisher:
    """One event, published to every process's subscribers: by the relay, or as a job."""

    def __init__(self, pubsub: PubSub) -> None:
        self.pubsub = pubsub

    async def publish(self, payload: dict[str, Any]) -> None:
        await self.pubsub.publish(ORDERS_CHANNEL, json.dumps(payload).encode())

    async def __call__(self, message: ClaimedMessage, completion: Completion) -> None:
        # Only for events an older version put in the job queue; the relay publishes the rest.
        # Marked done after the publish returns: a repeated event only repeats a status.
        await self.publish(message.payload)
