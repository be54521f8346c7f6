"""`Idempotency-Key` on order creation: the first outcome is kept 24 hours and replayed.

The key is claimed in a transaction of its own, committed at once, so a concurrent duplicate sees
the claim (409 request_in_progress) instead of waiting on it; the order and the stored response
then commit together, so no retry can create a second order.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, null, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from order_api.auth.service import Caller
from order_api.orders import service
from order_api.orders.models import IdempotencyRecord
from order_api.orders.schemas import OrderCreate, OrderRead
from order_api.platform.db.compiled_writes import CompiledWrite
from order_api.platform.db.engine import transaction_connection
from order_api.platform.errors import PROBLEM_MEDIA_TYPE, AppError, Conflict, ValidationFailed
from order_api.platform.limits.rules import RateLimits
from order_api.platform.telemetry.logs import current_request_id

RETENTION = timedelta(hours=24)
# A claim with no outcome after this long belongs to a request that died: the key is free again.
ABANDONED_AFTER = timedelta(seconds=60)
# Outcomes worth replaying: the order, and business refusals. Others may pass on a retry.
STORED_STATUSES = frozenset({201, 409})
PURGE_INTERVAL_SECONDS = 60.0
# Our claim, if it is still ours: not settled, and not taken over meanwhile (a new instant).
_OURS = (
    IdempotencyRecord.user_id == bindparam("user"),
    IdempotencyRecord.key == bindparam("claimed_key"),
    IdempotencyRecord.response_status.is_(None),
    IdempotencyRecord.created_at == bindparam("claimed_at"),
)
_FREE = CompiledWrite(delete(IdempotencyRecord).where(*_OURS))
_SETTLE = CompiledWrite(
    update(IdempotencyRecord)
    .where(*_OURS)
    .values(
        response_status=bindparam("status"),
        response_body=bindparam("body", type_=IdempotencyRecord.response_body.type),
    )
    .returning(IdempotencyRecord.id)
)
_next_purge = 0.0
OnConflictInsert = postgresql.Insert | sqlite.Insert


class KeyReused(ValidationFailed):
    code, title = "idempotency_key_reused", "Idempotency key reused"
    default_detail = "This Idempotency-Key was used with a different request body."

    def __init__(self) -> None:
        # The location FastAPI gives the same header when it fails validation.
        field_error = {"loc": ["header", "idempotency-key"], "msg": self.default_detail}
        super().__init__(extra={"errors": [{**field_error, "type": self.code}]})


class RequestInProgress(Conflict):
    code, title = "request_in_progress", "Request in progress"
    default_detail = "A request with this Idempotency-Key is still running; retry shortly."


@dataclass(frozen=True)
class Outcome:
    status: int
    body: Any
    media_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


async def submit_order(
    session: AsyncSession,
    rate_limits: RateLimits,
    customer: Caller,
    data: OrderCreate,
    key: str | None,
    currency: str,
) -> Outcome:
    """Place an order; with a key, at most once per key and body, replaying the first outcome.
    Limited per customer before anything is claimed: a 429 is never stored (SPEC §5.9)."""
    await rate_limits.check_order(str(customer.id))
    if key is None:
        return _created(await service.place_order(session, customer, data, currency))
    user_id = customer.id
    request_hash = _fingerprint(data)
    claim = await _claim(session, user_id, key, request_hash)
    if isinstance(claim, IdempotencyRecord):
        return _replay(claim, request_hash)
    ours = {"user": user_id, "claimed_key": key, "claimed_at": claim}
    try:
        outcome = _created(await service.place_order(session, customer, data, currency))
        # In the order's transaction: if the claim was taken over, this order rolls back.
        outcome_values = {"status": outcome.status, "body": outcome.body}
        settled = await _SETTLE.scalar(
            await transaction_connection(session), {**ours, **outcome_values}
        )
        if settled is None:
            raise RequestInProgress()
        # Committed here, not by the request: a COMMIT lost with its connection then frees the key
        # below (or finds it settled, if the COMMIT landed) instead of holding it for a minute.
        await session.commit()
    except AppError as error:
        await session.rollback()
        stored = error.status in STORED_STATUSES and not isinstance(error, RequestInProgress)
        body = json.loads(bytes(error.to_response().body)) if stored else None
        await _settle(session, ours, error.status, body)
        raise
    except BaseException:
        await session.rollback()
        await _settle(session, ours, None, None)
        raise
    return outcome


async def _claim(
    session: AsyncSession, user_id: uuid.UUID, key: str, request_hash: str
) -> IdempotencyRecord | datetime:
    """The instant of our claim when this request now owns the key (it identifies the claim);
    else the record it must answer from. One statement claims a free or expired key."""
    now = datetime.now(UTC)
    connection = await transaction_connection(session)
    await _purge_expired_now_and_then(connection, now)
    values = {
        "id": uuid.uuid4(),
        "user_id": user_id,
        "key": key,
        "request_hash": request_hash,
        "created_at": now,
        "expires_at": now + RETENTION,
        "claimed_at": now,
    }
    claimed = await _CLAIM.scalar(connection, values)
    if claimed is not None:
        await session.commit()
        return now
    existing = await _find(session, user_id, key)
    taken_over = (
        existing is not None
        and _abandoned(existing, now)
        and await _take_over(session, existing, request_hash, now)
    )
    await session.commit()
    if taken_over:
        return now
    found = await _find(session, user_id, key)
    if found is None:
        raise RequestInProgress()  # claimed and freed again meanwhile: the retry will tell
    return found


def _claim_statement(insert: Callable[[type[IdempotencyRecord]], OnConflictInsert]) -> Any:
    """Claims a free key, or takes over an expired record of it; returns nothing when the key
    is held. Built once per dialect: building it per request cost more than running it."""
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


_CLAIM = CompiledWrite(
    _claim_statement(postgresql.insert), elsewhere=_claim_statement(sqlite.insert)
)


async def _purge_expired_now_and_then(connection: AsyncConnection, now: datetime) -> None:
    """Expired records are claimed over by the statement above; this only keeps the table small,
    at most once a minute per process rather than on every order."""
    global _next_purge
    if time.monotonic() < _next_purge:
        return
    _next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
    await connection.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= now))


async def _settle(
    session: AsyncSession, ours: dict[str, Any], status: int | None, body: Any
) -> None:
    """Record a refusal worth replaying, or free the key for a retry; committed at once.

    `ours` matches our claim only, so a claim taken over by a retry is left to its new owner.
    """
    connection = await transaction_connection(session)
    if body is None:
        await _FREE.execute(connection, ours)
    else:
        await _SETTLE.execute(connection, {**ours, "status": status, "body": body})
    await session.commit()


async def _find(session: AsyncSession, user_id: uuid.UUID, key: str) -> IdempotencyRecord | None:
    return await session.scalar(
        select(IdempotencyRecord)
        .where(IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key)
        .execution_options(populate_existing=True)
    )


async def _take_over(
    session: AsyncSession, record: IdempotencyRecord, request_hash: str, now: datetime
) -> bool:
    """Claim a dead request's key; conditional, so of two retries taking over only one wins."""
    taken = await session.scalar(
        update(IdempotencyRecord)
        .where(
            IdempotencyRecord.id == record.id,
            IdempotencyRecord.response_status.is_(None),
            IdempotencyRecord.created_at == record.created_at,
        )
        .values(created_at=now, request_hash=request_hash, expires_at=now + RETENTION)
        .returning(IdempotencyRecord.id)
        .execution_options(synchronize_session=False)
    )
    return taken is not None


def _abandoned(record: IdempotencyRecord, now: datetime) -> bool:
    return record.response_status is None and record.created_at <= now - ABANDONED_AFTER


def _replay(record: IdempotencyRecord, request_hash: str) -> Outcome:
    if record.request_hash != request_hash:
        raise KeyReused()
    if record.response_status is None:
        raise RequestInProgress()
    headers = {"Idempotent-Replayed": "true"}
    if record.response_status < 400:
        return Outcome(record.response_status, record.response_body, headers=headers)
    # The first problem again, under this request's id, as every problem's `request_id` is.
    body = {**(record.response_body or {}), "request_id": current_request_id()}
    return Outcome(record.response_status, body, PROBLEM_MEDIA_TYPE, headers)


def _created(order: OrderRead) -> Outcome:
    return Outcome(201, order.model_dump(mode="json"))


def _fingerprint(data: OrderCreate) -> str:
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
