"""The outbox's SQL: every statement that reads or writes `outbox_messages`.

Every change of a row's state is one conditional UPDATE, so of two relays or two deliveries of the
same job only one ever wins.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Update, and_, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.jobs.models import OutboxMessage, OutboxStatus
from order_api.platform.db import Statement, transaction_connection

# Built once: an INSERT built per call costs a third more than running it.
_INSERT_MESSAGES = Statement(insert(OutboxMessage))
# Rows a relay delivers: new ones, due retries, and ones whose hand-off or job went quiet.
_RELAYED_STATUSES = [OutboxStatus.PENDING, OutboxStatus.DISPATCHED, OutboxStatus.PROCESSING]


async def insert_outbox_messages(
    session: AsyncSession, messages: Sequence[Mapping[str, Any]]
) -> None:
    """Every row in one call, in the session's transaction: one round trip for an order's two."""
    await _INSERT_MESSAGES.execute(await transaction_connection(session), messages)


async def lease_due_messages(
    session: AsyncSession, now: datetime, leased_until: datetime, token: uuid.UUID, limit: int
) -> Sequence[Row[tuple[uuid.UUID, str, dict[str, Any], datetime]]]:
    """Lease up to `limit` rows due at `now`, oldest first; returns id, kind, payload, created_at
    of each, in no particular order."""
    due = (
        select(OutboxMessage.id)
        .where(OutboxMessage.status.in_(_RELAYED_STATUSES), OutboxMessage.available_at <= now)
        .order_by(OutboxMessage.available_at)
        .limit(limit)
    )
    leased = await session.execute(
        update(OutboxMessage)
        # The repeated time test makes a concurrent relay that waited on the same rows skip them.
        .where(OutboxMessage.id.in_(due.scalar_subquery()), OutboxMessage.available_at <= now)
        .values(status=OutboxStatus.PENDING, available_at=leased_until, lease_token=token)
        .returning(
            OutboxMessage.id, OutboxMessage.kind, OutboxMessage.payload, OutboxMessage.created_at
        )
        .execution_options(synchronize_session=False)
    )
    return leased.all()


async def mark_dispatched(
    session: AsyncSession, ids: list[uuid.UUID], token: uuid.UUID, available_at: datetime
) -> None:
    """Handed to the job queue; a row a fast job already took (or failed) keeps its newer state."""
    await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id.in_(ids),
            OutboxMessage.lease_token == token,
            OutboxMessage.status == OutboxStatus.PENDING,
        )
        .values(status=OutboxStatus.DISPATCHED, available_at=available_at)
        .execution_options(synchronize_session=False)
    )


async def mark_all_done(
    session: AsyncSession, ids: list[uuid.UUID], token: uuid.UUID, completed_at: datetime
) -> None:
    await session.execute(
        _leased(ids, token).values(
            status=OutboxStatus.DONE, completed_at=completed_at, lease_token=None
        )
    )


async def end_lease(
    session: AsyncSession, ids: list[uuid.UUID], token: uuid.UUID, available_at: datetime
) -> None:
    """The rows stay as they are, due again at `available_at` and held by no one."""
    await session.execute(_leased(ids, token).values(available_at=available_at, lease_token=None))


def _leased(ids: list[uuid.UUID], token: uuid.UUID) -> Update:
    """An UPDATE of these rows while this lease still holds them."""
    return (
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids), OutboxMessage.lease_token == token)
        .execution_options(synchronize_session=False)
    )


async def start_processing(
    session: AsyncSession,
    message_id: uuid.UUID,
    now: datetime,
    leased_until: datetime,
    token: uuid.UUID,
) -> Row[tuple[str, dict[str, Any], int]] | None:
    """Take the row for one delivery, counting the attempt; returns its kind, payload and
    attempts, or None when it is done, failed, or another job holds it."""
    taken = await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            or_(
                OutboxMessage.status == OutboxStatus.DISPATCHED,
                # Pending: handed over by a relay (it holds a token), or new / due for a retry;
                # a stale queue message never jumps a retry's backoff.
                and_(
                    OutboxMessage.status == OutboxStatus.PENDING,
                    or_(OutboxMessage.lease_token.is_not(None), OutboxMessage.available_at <= now),
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
            available_at=leased_until,
            lease_token=token,
            attempts=OutboxMessage.attempts + 1,
        )
        .returning(OutboxMessage.kind, OutboxMessage.payload, OutboxMessage.attempts)
        .execution_options(synchronize_session=False)
    )
    return taken.one_or_none()


async def mark_done(
    session: AsyncSession, message_id: uuid.UUID, token: uuid.UUID, completed_at: datetime
) -> bool:
    """False when the row's lease went to another delivery."""
    # Core on the session's connection: the ORM's UPDATE machinery (~0.1 ms) would lie between
    # an SMTP server's 250 and the mark, where a crash sends the e-mail twice.
    connection = await session.connection()
    result = await connection.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.lease_token == token)
        .values(status=OutboxStatus.DONE, completed_at=completed_at, lease_token=None)
    )
    return result.rowcount == 1


async def release(
    session: AsyncSession, message_id: uuid.UUID, token: uuid.UUID, available_at: datetime
) -> bool:
    """Pending again, due at `available_at`, the attempt taken back; False when the lease went
    to another delivery."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.lease_token == token)
        .values(
            status=OutboxStatus.PENDING,
            available_at=available_at,
            lease_token=None,
            attempts=OutboxMessage.attempts - 1,
        )
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))


async def record_failure(
    session: AsyncSession,
    message_id: uuid.UUID,
    token: uuid.UUID,
    status: OutboxStatus,
    error: str,
    available_at: datetime,
) -> None:
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.lease_token == token)
        .values(status=status, last_error=error, available_at=available_at, lease_token=None)
        .execution_options(synchronize_session=False)
    )


async def retry_failed(session: AsyncSession, now: datetime) -> int:
    """Every failed row pending again, due at `now`, with fresh attempts; returns how many."""
    result = await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.FAILED)
        .values(status=OutboxStatus.PENDING, attempts=0, available_at=now, lease_token=None)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0))
