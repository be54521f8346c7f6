"""The outbox's rules: write with the change, claim under a lease, finish once, retry with backoff.

The rows are read and written by jobs/repository.py. Times come from Python (UTC), so SQLite and
PostgreSQL compare the same values.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from order_api.jobs import repository
from order_api.jobs.models import OutboxStatus

RELAY_BATCH_SIZE = 100
ERROR_TEXT_LIMIT = 2000
OUTBOX_WRITTEN = "order_api.outbox_written"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class NewMessage:
    """Work to promise: what kind of work, and what it needs (JSON)."""

    kind: str
    payload: dict[str, Any]


async def enqueue(session: AsyncSession, kind: str, payload: dict[str, Any]) -> uuid.UUID:
    """Record work to do once this session commits; nothing happens if it rolls back."""
    [message_id] = await enqueue_all(session, [NewMessage(kind, payload)])
    return message_id


async def enqueue_all(session: AsyncSession, messages: Sequence[NewMessage]) -> list[uuid.UUID]:
    """`enqueue` for several messages, written together (one instant, so no order among them)."""
    now = utc_now()
    ids = [uuid.uuid4() for _ in messages]
    rows = [
        {
            "id": message_id,
            "kind": message.kind,
            "payload": message.payload,
            "available_at": now,
            "created_at": now,
        }
        for message_id, message in zip(ids, messages, strict=True)
    ]
    await repository.insert_outbox_messages(session, rows)
    session.info[OUTBOX_WRITTEN] = True
    return ids


@dataclass(frozen=True)
class ClaimedMessage:
    id: uuid.UUID
    kind: str
    payload: dict[str, Any]
    attempts: int
    lease_token: uuid.UUID


@dataclass(frozen=True)
class DueMessage:
    id: uuid.UUID
    kind: str
    payload: dict[str, Any]


async def claim_due(session: AsyncSession, lease: timedelta) -> tuple[uuid.UUID, list[DueMessage]]:
    """Lease the rows the relay should deliver now: new, due retries, and stuck ones, oldest
    first."""
    now = utc_now()
    token = uuid.uuid4()
    rows = await repository.lease_due_messages(session, now, now + lease, token, RELAY_BATCH_SIZE)
    # The lease keeps no order: deliver in the order the work was written (events of one order).
    in_order = sorted(rows, key=lambda row: row.created_at)
    return token, [DueMessage(row.id, row.kind, row.payload) for row in in_order]


async def mark_dispatched(
    session: AsyncSession, ids: list[uuid.UUID], token: uuid.UUID, redelivery_after: timedelta
) -> None:
    """After the hand-off; a row a fast job already took (or failed) keeps its newer state."""
    await repository.mark_dispatched(session, ids, token, utc_now() + redelivery_after)


async def mark_published(session: AsyncSession, ids: list[uuid.UUID], token: uuid.UUID) -> None:
    """The relay delivered these rows itself: done, in one statement."""
    await repository.mark_all_done(session, ids, token, utc_now())


async def give_back(
    session: AsyncSession, ids: list[uuid.UUID], token: uuid.UUID, retry_after: timedelta
) -> None:
    """Rows a relay claimed and could not deliver (Redis is down): due again after
    `retry_after`, not when the claim's lease runs out."""
    await repository.end_lease(session, ids, token, utc_now() + retry_after)


async def start_processing(
    session: AsyncSession, message_id: uuid.UUID, lease: timedelta
) -> ClaimedMessage | None:
    """Take the row for one delivery; None when it is done, failed, or another job holds it."""
    now = utc_now()
    token = uuid.uuid4()
    row = await repository.start_processing(session, message_id, now, now + lease, token)
    if row is None:
        return None
    return ClaimedMessage(message_id, row.kind, row.payload, row.attempts, token)


async def mark_done(session: AsyncSession, message: ClaimedMessage) -> bool:
    """False when the row's lease went to another delivery, which then decides its fate."""
    return await repository.mark_done(session, message.id, message.lease_token, utc_now())


async def release(session: AsyncSession, message: ClaimedMessage) -> bool:
    """Hand a row back untried (its delivery was stopped): due now, the attempt not counted."""
    return await repository.release(session, message.id, message.lease_token, utc_now())


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    base_seconds: float
    max_seconds: float

    def delay(self, attempts: int) -> timedelta:
        """Exponential in the attempts made, capped, with jitter so retries do not stampede."""
        ceiling = min(self.base_seconds * 2 ** (attempts - 1), self.max_seconds)
        return timedelta(seconds=ceiling * random.uniform(0.5, 1.0))  # noqa: S311 - not crypto


async def record_failure(
    session: AsyncSession,
    message: ClaimedMessage,
    error: str,
    policy: RetryPolicy,
    *,
    permanent: bool,
) -> OutboxStatus:
    """Schedule a retry, or give up when the error is permanent or the attempts are spent."""
    attempts = message.attempts
    gives_up = permanent or attempts >= policy.max_attempts
    status = OutboxStatus.FAILED if gives_up else OutboxStatus.PENDING
    retry_at = utc_now() + policy.delay(attempts)
    await repository.record_failure(
        session, message.id, message.lease_token, status, error[:ERROR_TEXT_LIMIT], retry_at
    )
    return status


async def retry_failed(session: AsyncSession) -> int:
    """Put every failed row back in line with fresh attempts; returns how many."""
    count = await repository.retry_failed(session, utc_now())
    session.info[OUTBOX_WRITTEN] = True
    return count
