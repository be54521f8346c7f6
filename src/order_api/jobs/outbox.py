"""The outbox's rules: write with the change, claim under a lease, finish once, retry with backoff.

Every state change is one conditional UPDATE, so two relays or two deliveries of the same job
never both win. Times come from Python (UTC) so SQLite and PostgreSQL compare the same values.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.jobs.models import OutboxMessage, OutboxStatus
from order_api.platform.db.compiled_writes import CompiledWrite
from order_api.platform.db.engine import transaction_connection

RELAY_BATCH_SIZE = 100
ERROR_TEXT_LIMIT = 2000
OUTBOX_WRITTEN = "order_api.outbox_written"
_INSERT_MESSAGE = CompiledWrite(insert(OutboxMessage))


def utc_now() -> datetime:
    return datetime.now(UTC)


async def enqueue(session: AsyncSession, kind: str, payload: dict[str, Any]) -> uuid.UUID:
    """Record work to do once this session commits; nothing happens if it rolls back."""
    now = utc_now()
    message_id = uuid.uuid4()
    row = {"id": message_id, "kind": kind, "payload": payload, "available_at": now}
    # An INSERT at once, in the caller's transaction: cheaper than an object to flush.
    await _INSERT_MESSAGE.execute(await transaction_connection(session), {**row, "created_at": now})
    session.info[OUTBOX_WRITTEN] = True
    return message_id


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
    due = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status.in_(
                [OutboxStatus.PENDING, OutboxStatus.DISPATCHED, OutboxStatus.PROCESSING]
            ),
            OutboxMessage.available_at <= now,
        )
        .order_by(OutboxMessage.available_at)
        .limit(RELAY_BATCH_SIZE)
    )
    claimed = await session.execute(
        update(OutboxMessage)
        # The repeated time test makes a concurrent relay that waited on the same rows skip them.
        .where(OutboxMessage.id.in_(due.scalar_subquery()), OutboxMessage.available_at <= now)
        .values(status=OutboxStatus.PENDING, available_at=now + lease, lease_token=token)
        .returning(
            OutboxMessage.id, OutboxMessage.kind, OutboxMessage.payload, OutboxMessage.created_at
        )
        .execution_options(synchronize_session=False)
    )
    # RETURNING keeps no order: deliver in the order the work was written (events of one order).
    rows = sorted(claimed, key=lambda row: row.created_at)
    return token, [DueMessage(row.id, row.kind, row.payload) for row in rows]


async def mark_dispatched(
    session: AsyncSession, ids: list[uuid.UUID], token: uuid.UUID, redelivery_after: timedelta
) -> None:
    """After the hand-off; a row a fast job already took (or failed) keeps its newer state."""
    await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id.in_(ids),
            OutboxMessage.lease_token == token,
            OutboxMessage.status == OutboxStatus.PENDING,
        )
        .values(status=OutboxStatus.DISPATCHED, available_at=utc_now() + redelivery_after)
        .execution_options(synchronize_session=False)
    )


async def mark_published(session: AsyncSession, ids: list[uuid.UUID], token: uuid.UUID) -> None:
    """The relay delivered these rows itself: done, in one statement."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.lease_token == token)
        .values(status=OutboxStatus.DONE, completed_at=utc_now(), lease_token=None)
        .execution_options(synchronize_session=False)
    )


async def give_back(
    session: AsyncSession, ids: list[uuid.UUID], token: uuid.UUID, retry_after: timedelta
) -> None:
    """Rows a relay claimed and could not deliver (Redis is down): due again after
    `retry_after`, not when the claim's lease runs out."""
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.lease_token == token)
        .values(available_at=utc_now() + retry_after, lease_token=None)
        .execution_options(synchronize_session=False)
    )


async def start_processing(
    session: AsyncSession, message_id: uuid.UUID, lease: timedelta
) -> ClaimedMessage | None:
    """Take the row for one delivery; None when it is done, failed, or another job holds it."""
    now = utc_now()
    token = uuid.uuid4()
    row = (
        await session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.id == message_id,
                or_(
                    OutboxMessage.status == OutboxStatus.DISPATCHED,
                    # Pending: handed over by a relay (it holds a token), or new / due for a retry;
                    # a stale queue message never jumps a retry's backoff.
                    and_(
                        OutboxMessage.status == OutboxStatus.PENDING,
                        or_(
                            OutboxMessage.lease_token.is_not(None),
                            OutboxMessage.available_at <= now,
                        ),
                    ),
                    and_(
                        OutboxMessage.status == OutboxStatus.PROCESSING,
                        OutboxMessage.available_at <= now,
                    ),
                ),
            )
            # Counted when an attempt starts, so attempts that outlive their lease are counted too.
            .values(
                status=OutboxStatus.PROCESSING,
                available_at=now + lease,
                lease_token=token,
                attempts=OutboxMessage.attempts + 1,
            )
            .returning(OutboxMessage.kind, OutboxMessage.payload, OutboxMessage.attempts)
            .execution_options(synchronize_session=False)
        )
    ).one_or_none()
    if row is None:
        return None
    return ClaimedMessage(message_id, row.kind, row.payload, row.attempts, token)


async def mark_done(session: AsyncSession, message: ClaimedMessage) -> bool:
    """False when the row's lease went to another delivery, which then decides its fate."""
    # Core on the session's connection: the ORM's UPDATE machinery (~0.1 ms) would lie between
    # an SMTP server's 250 and the mark, where a crash sends the e-mail twice.
    connection = await session.connection()
    result = await connection.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message.id, OutboxMessage.lease_token == message.lease_token)
        .values(status=OutboxStatus.DONE, completed_at=utc_now(), lease_token=None)
    )
    return result.rowcount == 1


async def release(session: AsyncSession, message: ClaimedMessage) -> bool:
    """Hand a row back untried (its delivery was stopped): due now, the attempt not counted."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message.id, OutboxMessage.lease_token == message.lease_token)
        .values(
            status=OutboxStatus.PENDING,
            available_at=utc_now(),
            lease_token=None,
            attempts=OutboxMessage.attempts - 1,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


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
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message.id, OutboxMessage.lease_token == message.lease_token)
        .values(
            status=status,
            last_error=error[:ERROR_TEXT_LIMIT],
            available_at=utc_now() + policy.delay(attempts),
            lease_token=None,
        )
        .execution_options(synchronize_session=False)
    )
    return status


async def retry_failed(session: AsyncSession) -> int:
    """Put every failed row back in line with fresh attempts; returns how many."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.FAILED)
        .values(status=OutboxStatus.PENDING, attempts=0, available_at=utc_now(), lease_token=None)
        .execution_options(synchronize_session=False)
    )
    session.info[OUTBOX_WRITTEN] = True
    return int(getattr(result, "rowcount", 0))
