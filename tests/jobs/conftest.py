from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from order_api.jobs import outbox
from order_api.jobs.models import OutboxMessage
from order_api.notifications.emails import queue_email
from tests.smtp_server import SmtpServer
from tests.support import AppBuilder

# Fast retries and sweeps, so a test sees several attempts without waiting on production timings.
FAST_JOBS: dict[str, Any] = {
    "job_retry_base_seconds": 0.05,
    "job_retry_max_seconds": 0.2,
    "outbox_poll_seconds": 0.05,
}
WELCOME: dict[str, Any] = {}  # the welcome e-mail carries nothing the registrant typed


@pytest.fixture
async def mail_app(make_app: AppBuilder, smtp: SmtpServer) -> FastAPI:
    return await make_app(**smtp.settings(), **FAST_JOBS)


async def queue_and_commit(
    app: FastAPI, to: str = "ada@example.com", template: str = "welcome", **context: Any
) -> uuid.UUID:
    async with app.state.sessionmaker() as session:
        message_id = await queue_email(session, template, to, context or WELCOME)
        await session.commit()
    return message_id


async def queue_without_waking_the_relay(app: FastAPI) -> uuid.UUID:
    """Commit a welcome e-mail without the after-commit wake: only the relay's sweep finds it."""
    async with app.state.sessionmaker() as session:
        message_id = await queue_email(session, "welcome", "ada@example.com", WELCOME)
        session.info.pop(outbox.OUTBOX_WRITTEN)
        await session.commit()
    return message_id


async def outbox_row(app: FastAPI, message_id: uuid.UUID) -> OutboxMessage | None:
    sessionmaker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    async with sessionmaker() as session:
        return await session.get(OutboxMessage, message_id)
