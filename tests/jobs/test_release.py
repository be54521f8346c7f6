"""A delivery cancelled mid-job (a stopping worker) hands its row back at once, untried, instead
of leaving it `processing` until its lease runs out."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest
from fastapi import FastAPI
from sqlalchemy import update

from order_api.jobs import outbox
from order_api.jobs.delivery import Completion, JobRuntime, deliver
from order_api.jobs.models import OutboxMessage, OutboxStatus
from tests.jobs.conftest import outbox_row
from tests.support import AppBuilder

PROBE = "probe"
EARLIER_ATTEMPTS = 2  # the row was tried before: the release must leave that count alone


def runtime_with(
    app: FastAPI, handler: Callable[[outbox.ClaimedMessage, Completion], Awaitable[None]]
) -> JobRuntime:
    """The app's own runtime, with one handler for the probe rows of this test."""
    runtime: JobRuntime = app.state.background.broker.state.runtime
    return JobRuntime(app.state.sessionmaker, {PROBE: handler}, runtime.retry, runtime.lease)


async def probe_row(app: FastAPI) -> uuid.UUID:
    async with app.state.sessionmaker() as session:
        message_id = await outbox.enqueue(session, PROBE, {})
        await session.commit()
    async with app.state.sessionmaker() as session:
        row = await session.get(OutboxMessage, message_id)
        assert row is not None
        row.attempts = EARLIER_ATTEMPTS
        await session.commit()
    return message_id


@pytest.fixture
async def quiet_app(make_app: AppBuilder) -> FastAPI:
    """An app whose relay is stopped, so nothing but the test delivers its rows."""
    app = await make_app()
    await app.state.background.relay.stop()
    return app


async def test_a_cancelled_delivery_puts_its_row_back_due_now_untried(quiet_app: FastAPI) -> None:
    started = asyncio.Event()

    async def blocks(message: outbox.ClaimedMessage, completion: Completion) -> None:
        started.set()
        await asyncio.Event().wait()

    message_id = await probe_row(quiet_app)
    delivery = asyncio.create_task(deliver(runtime_with(quiet_app, blocks), message_id))
    await asyncio.wait_for(started.wait(), 30)
    held = await outbox_row(quiet_app, message_id)
    assert held is not None
    assert (held.status, held.attempts) == (OutboxStatus.PROCESSING, EARLIER_ATTEMPTS + 1)

    delivery.cancel()
    with pytest.raises(asyncio.CancelledError):
        await delivery

    row = await outbox_row(quiet_app, message_id)
    assert row is not None
    assert (row.status, row.attempts, row.lease_token) == (
        OutboxStatus.PENDING,
        EARLIER_ATTEMPTS,
        None,
    )
    delivered: list[uuid.UUID] = []

    async def succeeds(message: outbox.ClaimedMessage, completion: Completion) -> None:
        delivered.append(message.id)

    # Due now, not at the end of the lease: the next delivery takes it at once.
    assert await deliver(runtime_with(quiet_app, succeeds), message_id) == OutboxStatus.DONE
    assert delivered == [message_id]
    done = await outbox_row(quiet_app, message_id)
    assert done is not None
    assert (done.status, done.attempts) == (OutboxStatus.DONE, EARLIER_ATTEMPTS + 1)


async def test_a_release_never_touches_a_row_another_delivery_took_over(
    quiet_app: FastAPI,
) -> None:
    message_id = await probe_row(quiet_app)
    runtime = runtime_with(quiet_app, lambda message, completion: asyncio.sleep(0))
    async with quiet_app.state.sessionmaker() as session:
        stale = await outbox.start_processing(session, message_id, runtime.lease)
        await session.commit()
    assert stale is not None
    async with quiet_app.state.sessionmaker() as session:
        # Its lease ran out and another delivery holds the row now, under a new token.
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id)
            .values(lease_token=uuid.uuid4())
        )
        assert not await outbox.release(session, stale)
        await session.commit()
    row = await outbox_row(quiet_app, message_id)
    assert row is not None
    assert (row.status, row.attempts) == (OutboxStatus.PROCESSING, EARLIER_ATTEMPTS + 1)
