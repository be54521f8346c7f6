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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from order_api.auth.service import Caller
from order_api.orders import repository, service
from order_api.orders.models import IdempotencyRecord
from order_api.orders.repository import KeyClaim
from order_api.orders.schemas import OrderCreate, OrderRead
from order_api.platform.db import continue_in_turn
from order_api.platform.errors import PROBLEM_MEDIA_TYPE, AppError, Conflict, ValidationFailed
from order_api.platform.limits import RateLimits
from order_api.platform.telemetry import current_request_id

RETENTION = timedelta(hours=24)
# A claim with no outcome after this long belongs to a request that died: the key is free again.
ABANDONED_AFTER = timedelta(seconds=60)
# Outcomes worth replaying: the order, and business refusals. Others may pass on a retry.
STORED_STATUSES = frozenset({201, 409})
PURGE_INTERVAL_SECONDS = 60.0
_next_purge = 0.0


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
    request_hash = _fingerprint(data)
    claim = await _claim(session, customer.id, key, request_hash)
    if isinstance(claim, IdempotencyRecord):
        return _replay(claim, request_hash)
    await continue_in_turn(session)  # the claim committed: the order takes a connection in turn
    try:
        outcome = _created(await service.place_order(session, customer, data, currency))
        # In the order's transaction: if the claim was taken over, this order rolls back.
        settled = await repository.settle_idempotency_key(
            session, claim, outcome.status, outcome.body
        )
        if not settled:
            raise RequestInProgress()
        # Committed here, not by the request: a COMMIT lost with its connection then frees the key
        # below (or finds it settled, if the COMMIT landed) instead of holding it for a minute.
        await session.commit()
    except AppError as error:
        await session.rollback()
        stored = error.status in STORED_STATUSES and not isinstance(error, RequestInProgress)
        body = json.loads(bytes(error.to_response().body)) if stored else None
        await _settle(session, claim, error.status, body)
        raise
    except BaseException:
        await session.rollback()
        await _settle(session, claim, None, None)
        raise
    return outcome


async def _claim(
    session: AsyncSession, user_id: uuid.UUID, key: str, request_hash: str
) -> IdempotencyRecord | KeyClaim:
    """Our claim when this request now owns the key; else the record it must answer from."""
    now = datetime.now(UTC)
    await _purge_expired_now_and_then(session, now)
    claim = KeyClaim(user_id, key, now)
    if await repository.claim_idempotency_key(session, claim, request_hash, now + RETENTION):
        await session.commit()
        return claim
    existing = await repository.find_idempotency_record(session, user_id, key)
    taken_over = (
        existing is not None
        and _abandoned(existing, now)
        and await repository.take_over_idempotency_record(
            session, existing, claim, request_hash, now + RETENTION
        )
    )
    await session.commit()
    if taken_over:
        return claim
    found = await repository.find_idempotency_record(session, user_id, key)
    if found is None:
        raise RequestInProgress()  # claimed and freed again meanwhile: the retry will tell
    return found


async def _purge_expired_now_and_then(session: AsyncSession, now: datetime) -> None:
    """Expired records are claimed over by the claim itself; this only keeps the table small,
    at most once a minute per process rather than on every order."""
    global _next_purge
    if time.monotonic() < _next_purge:
        return
    _next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
    await repository.delete_expired_idempotency_records(session, now)


async def _settle(session: AsyncSession, claim: KeyClaim, status: int | None, body: Any) -> None:
    """Record a refusal worth replaying, or free the key for a retry; committed at once.

    Only our claim is touched: a claim taken over by a retry is left to its new owner.
    """
    await continue_in_turn(session)  # after the order's rollback
    if status is None or body is None:
        await repository.free_idempotency_key(session, claim)
    else:
        await repository.settle_idempotency_key(session, claim, status, body)
    await session.commit()


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
