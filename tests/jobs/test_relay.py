"""The relay publishes order events itself and hands every other kind to the job queue."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select

from order_api.jobs import outbox
from order_api.jobs.models import OutboxMessage, OutboxStatus
from order_api.jobs.relay import OutboxRelay
from order_api.notifications.emails import queue_email
from order_api.orders.events import ORDER_EVENT_KIND, order_event_message
from order_api.orders.models import OrderStatus
from tests.jobs.conftest import WELCOME
from tests.support import AppBuilder

EVENTS = 30


async def quiet_app(make_app: AppBuilder) -> FastAPI:
    """An app whose own relay is stopped: the test's relays are the only ones."""
    app = await make_app()
    await app.state.background.relay.stop()
    return app


async def commit_events(app: FastAPI, count: int) -> list[str]:
    """`count` creation events committed at once; returns their order ids in commit order."""
    order_ids = [uuid.uuid4() for _ in range(count)]
    async with app.state.sessionmaker() as session:
        for order_id in order_ids:
            event = order_event_message(
                order_id, uuid.uuid4(), OrderStatus.PENDING, None, datetime.now(UTC)
            )
            await outbox.enqueue_all(session, [event])
        await session.commit()
    return [str(order_id) for order_id in order_ids]


Publish = Callable[[dict[str, Any]], Awaitable[None]]


def recording(into: list[str], fail_after: int | None = None) -> Publish:
    async def publish(payload: dict[str, Any]) -> None:
        if fail_after is not None and len(into) >= fail_after:
            raise ConnectionError("the pub-sub is down")
        into.append(payload["order_id"])
        await asyncio.sleep(0)  # let a concurrent relay run between two publishes

    return publish


def relay_of(
    app: FastAPI, publish: Publish, kicked: list[uuid.UUID] | None = None, poll_seconds: float = 0
) -> OutboxRelay:
    async def kick(message_id: uuid.UUID) -> None:
        if kicked is None:
            raise AssertionError("nothing here is for the job queue")
        kicked.append(message_id)

    return OutboxRelay(
        app.state.sessionmaker,
        kick,
        publishers={ORDER_EVENT_KIND: publish},
        poll_seconds=poll_seconds,  # what a pass could not deliver is due after this
        lease_seconds=60,
    )


async def rows(app: FastAPI) -> list[OutboxMessage]:
    async with app.state.sessionmaker() as session:
        return list(await session.scalars(select(OutboxMessage)))


async def test_two_relays_publish_each_event_once_and_mark_it_done(make_app: AppBuilder) -> None:
    app = await quiet_app(make_app)
    order_ids = await commit_events(app, EVENTS)
    published: list[list[str]] = [[], []]
    first, second = relay_of(app, recording(published[0])), relay_of(app, recording(published[1]))
    await asyncio.gather(first.relay_due(), second.relay_due(), first.relay_due())
    assert sorted(published[0] + published[1]) == sorted(order_ids)
    assert {row.status for row in await rows(app)} == {OutboxStatus.DONE}
    assert all(row.lease_token is None and row.completed_at for row in await rows(app))


async def test_events_a_pass_could_not_publish_are_due_again_at_once(make_app: AppBuilder) -> None:
    app = await quiet_app(make_app)
    order_ids = await commit_events(app, EVENTS)
    published: list[str] = []
    assert await relay_of(app, recording(published, fail_after=10)).relay_due() == 10
    left = [row for row in await rows(app) if row.status != OutboxStatus.DONE]
    assert len(left) == EVENTS - 10
    # Held by nobody, and due at the next sweep rather than when the claim's lease runs out.
    assert all(row.lease_token is None and row.available_at <= outbox.utc_now() for row in left)

    assert await relay_of(app, recording(published)).relay_due() == EVENTS - 10
    assert published == order_ids  # each once, in commit order
    assert {row.status for row in await rows(app)} == {OutboxStatus.DONE}


async def test_a_rolled_back_event_is_never_published(make_app: AppBuilder) -> None:
    app = await quiet_app(make_app)
    async with app.state.sessionmaker() as session:
        event = order_event_message(
            uuid.uuid4(), uuid.uuid4(), OrderStatus.PAID, OrderStatus.PENDING, datetime.now(UTC)
        )
        await outbox.enqueue_all(session, [event])
        await session.rollback()
    published: list[str] = []
    assert await relay_of(app, recording(published)).relay_due() == 0
    assert published == []
    assert await rows(app) == []


async def test_e_mails_still_go_to_the_job_queue(make_app: AppBuilder) -> None:
    app = await quiet_app(make_app)
    async with app.state.sessionmaker() as session:
        email_id = await queue_email(session, "welcome", "ada@example.com", WELCOME)
        await session.commit()
    [order_id] = await commit_events(app, 1)
    published: list[str] = []
    kicked: list[uuid.UUID] = []
    assert await relay_of(app, recording(published), kicked).relay_due() == 2
    assert (published, kicked) == ([order_id], [email_id])
    statuses = {row.kind: row.status for row in await rows(app)}
    assert statuses == {"email": OutboxStatus.DISPATCHED, ORDER_EVENT_KIND: OutboxStatus.DONE}
