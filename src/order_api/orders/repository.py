"""The orders' SQL: every statement that reads or writes `orders`, `order_lines`, `order_events`
and `idempotency_records`.

The INSERTs and UPDATEs of placing an order are compiled once (building one per call cost a third
more than running it) and run in the caller's session, inside its transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, bindparam, delete, insert, null, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from order_api.orders.models import IdempotencyRecord, Order, OrderEvent, OrderLine, OrderStatus
from order_api.platform.db import PageQuery, Statement, fetch_page, transaction_connection

# --- Orders -----------------------------------------------------------------------------------

_INSERT_ORDER = Statement(insert(Order))
_INSERT_LINES = Statement(insert(OrderLine))
_INSERT_EVENT = Statement(insert(OrderEvent))


async def insert_order(
    session: AsyncSession, order: Mapping[str, Any], lines: Sequence[Mapping[str, Any]]
) -> None:
    """The order's row and its lines' rows, as plain rows."""
    # Core INSERTs of plain rows: ORM objects for them cost 60 µs an order, their unit of work
    # 3x the INSERTs.
    connection = await transaction_connection(session)
    await _INSERT_ORDER.execute(connection, order)
    await _INSERT_LINES.execute(connection, lines)


async def insert_order_event(session: AsyncSession, event: Mapping[str, Any]) -> None:
    await _INSERT_EVENT.execute(await transaction_connection(session), event)


async def order_with_lines(session: AsyncSession, order_id: uuid.UUID) -> Order | None:
    return await session.scalar(
        select(Order).options(selectinload(Order.lines)).where(Order.id == order_id)
    )


async def order_page(
    session: AsyncSession,
    query: PageQuery,
    *,
    customer_id: uuid.UUID | None,
    status: OrderStatus | None,
) -> tuple[list[Order], int]:
    """Newest first, with their lines; filtered by customer and status where given. Three
    statements whatever the page size: count, orders, their lines."""
    conditions: list[ColumnElement[bool]] = []
    if customer_id is not None:
        conditions.append(Order.customer_id == customer_id)
    if status is not None:
        conditions.append(Order.status == status)
    statement = select(Order).where(*conditions).order_by(Order.created_at.desc(), Order.id.desc())
    return await fetch_page(session, query, statement, [selectinload(Order.lines)])


async def order_history(session: AsyncSession, order_id: uuid.UUID) -> list[OrderEvent]:
    """The order's events, oldest first."""
    events = await session.scalars(
        select(OrderEvent)
        .where(OrderEvent.order_id == order_id)
        .order_by(OrderEvent.at, OrderEvent.id)
    )
    return list(events)


async def move_order(
    session: AsyncSession, order: Order, target: OrderStatus, at: datetime
) -> bool:
    """Set the status `target` if the order still has the status it was read with; False when
    a concurrent move came first (of concurrent moves from one status, exactly one matches)."""
    moved = await session.scalar(
        update(Order)
        .where(Order.id == order.id, Order.status == order.status)
        .values(status=target, updated_at=at)
        .returning(Order.id)
        .execution_options(synchronize_session=False)
    )
    if moved is None:
        return False
    set_committed_value(order, "status", target)
    set_committed_value(order, "updated_at", at)
    return True


# --- Idempotency keys ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyClaim:
    """A request's claim on an `Idempotency-Key`: its instant tells it from a later claim."""

    user_id: uuid.UUID
    key: str
    claimed_at: datetime

    def parameters(self) -> dict[str, Any]:
        return {"user": self.user_id, "claimed_key": self.key, "claimed_at": self.claimed_at}


# Our claim, if it is still ours: not settled, and not taken over meanwhile (a new instant).
_OURS = (
    IdempotencyRecord.user_id == bindparam("user"),
    IdempotencyRecord.key == bindparam("claimed_key"),
    IdempotencyRecord.response_status.is_(None),
    IdempotencyRecord.created_at == bindparam("claimed_at"),
)
_FREE = Statement(delete(IdempotencyRecord).where(*_OURS))
_SETTLE = Statement(
    update(IdempotencyRecord)
    .where(*_OURS)
    .values(
        response_status=bindparam("status"),
        response_body=bindparam("body", type_=IdempotencyRecord.response_body.type),
    )
    .returning(IdempotencyRecord.id)
)
OnConflictInsert = postgresql.Insert | sqlite.Insert


def _claim_statement(insert: Callable[[type[IdempotencyRecord]], OnConflictInsert]) -> Any:
    """Claims a free key, or takes over an expired record of it; returns nothing when the key
    is held."""
    statement = insert(IdempotencyRecord)
    fresh = ("request_hash", "created_at", "expires_at")
    return statement.on_conflict_do_update(
        index_elements=[IdempotencyRecord.user_id, IdempotencyRecord.key],
        set_={
            **{name: statement.excluded[name] for name in fresh},
            "response_status": None,
            "response_body": null(),
        },
        where=IdempotencyRecord.expires_at <= bindparam("claimed_at"),
    ).returning(IdempotencyRecord.id)


_CLAIM = Statement(_claim_statement(postgresql.insert), elsewhere=_claim_statement(sqlite.insert))


async def claim_idempotency_key(
    session: AsyncSession, claim: KeyClaim, request_hash: str, expires_at: datetime
) -> bool:
    """One statement claims a free or expired key; False when another request holds it."""
    values = {
        "id": uuid.uuid4(),
        "user_id": claim.user_id,
        "key": claim.key,
        "request_hash": request_hash,
        "created_at": claim.claimed_at,
        "expires_at": expires_at,
        "claimed_at": claim.claimed_at,
    }
    return await _CLAIM.scalar(await transaction_connection(session), values) is not None


async def delete_expired_idempotency_records(session: AsyncSession, now: datetime) -> None:
    connection = await transaction_connection(session)
    await connection.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= now))


async def find_idempotency_record(
    session: AsyncSession, user_id: uuid.UUID, key: str
) -> IdempotencyRecord | None:
    """The record as the database holds it now, not as the session last loaded it."""
    return await session.scalar(
        select(IdempotencyRecord)
        .where(IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key)
        .execution_options(populate_existing=True)
    )


async def take_over_idempotency_record(
    session: AsyncSession,
    record: IdempotencyRecord,
    claim: KeyClaim,
    request_hash: str,
    expires_at: datetime,
) -> bool:
    """Claim the unsettled `record` anew, as it was read; of two takers only one wins."""
    taken = await session.scalar(
        update(IdempotencyRecord)
        .where(
            IdempotencyRecord.id == record.id,
            IdempotencyRecord.response_status.is_(None),
            IdempotencyRecord.created_at == record.created_at,
        )
        .values(
            created_at=claim.claimed_at,
            request_hash=request_hash,
            expires_at=expires_at,
        )
        .returning(IdempotencyRecord.id)
        .execution_options(synchronize_session=False)
    )
    return taken is not None


async def settle_idempotency_key(
    session: AsyncSession, claim: KeyClaim, status: int, body: Any
) -> bool:
    """Store the outcome on our claim; False when the claim is no longer ours."""
    parameters = {**claim.parameters(), "status": status, "body": body}
    return await _SETTLE.scalar(await transaction_connection(session), parameters) is not None


async def free_idempotency_key(session: AsyncSession, claim: KeyClaim) -> None:
    """Delete our claim, if it is still ours: the key is free for a retry."""
    await _FREE.execute(await transaction_connection(session), claim.parameters())
