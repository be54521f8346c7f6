"""Authentication's SQL: the refresh-token tables, and what authentication reads of `users` (the
caller, an account by e-mail, a user's row lock, who is still active).

Authentication sits below the accounts: the users domain calls auth's service to end sessions,
so the reads auth needs of `users` are made here rather than through the users domain.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.auth.models import RefreshToken, RefreshTokenFamily
from order_api.platform.db import DatabaseReader, Row, Statement, transaction_connection
from order_api.users.models import Role, User

REVOCATION_CHECK_BATCH = 500  # ids per IN (...) list: well inside every driver's parameter limit

# --- The caller ---------------------------------------------------------------------------------

# The one read of who is calling, run in the request's transaction or, for public reads, alone.
CALLER_ROW = select(
    User.id, User.email, User.full_name, User.role, User.is_active, User.tokens_valid_after
).where(User.id == bindparam("user_id"))
_CALLER = Statement(CALLER_ROW)


@dataclass(frozen=True)
class CallerRecord:
    """A user as authentication reads them: who they are, and whether their tokens still count."""

    id: uuid.UUID
    email: str
    full_name: str
    role: Role
    is_active: bool
    tokens_valid_after: datetime


async def find_caller(session: AsyncSession, user_id: uuid.UUID) -> CallerRecord | None:
    """In the session's transaction (a Core row: the ORM object cost ~100 µs more a request)."""
    connection = await transaction_connection(session)
    return _caller_record(await _CALLER.first(connection, {"user_id": user_id}))


async def read_caller(reader: DatabaseReader, user_id: uuid.UUID) -> CallerRecord | None:
    """Outside any session or transaction: for public reads and stream handshakes."""
    return _caller_record(await reader.fetch_one(_CALLER, user_id=user_id))


def _caller_record(row: Row | None) -> CallerRecord | None:
    if row is None:
        return None
    return CallerRecord(
        row["id"],
        row["email"],
        row["full_name"],
        Role(row["role"]),
        row["is_active"],
        row["tokens_valid_after"],
    )


# --- Accounts, as authentication reads them --------------------------------------------------


async def find_user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email))


async def lock_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The user as committed now, its row locked until this transaction ends.

    PostgreSQL takes a row lock; SQLite's `BEGIN IMMEDIATE` already serialises whole transactions.
    """
    return await session.scalar(
        select(User)
        .where(User.id == user_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def tokens_valid_after_of_active(
    session: AsyncSession, user_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, datetime]:
    """Per user still active, the instant before which their access tokens no longer count;
    deactivated and unknown users are left out."""
    found: dict[uuid.UUID, datetime] = {}
    ids = list(user_ids)
    for start in range(0, len(ids), REVOCATION_CHECK_BATCH):
        rows = await session.execute(
            select(User.id, User.tokens_valid_after).where(
                User.id.in_(ids[start : start + REVOCATION_CHECK_BATCH]), User.is_active
            )
        )
        for user_id, valid_after in rows:
            found[user_id] = valid_after
    return found


# --- Refresh tokens ----------------------------------------------------------------------------


async def delete_expired_families(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        delete(RefreshTokenFamily).where(
            RefreshTokenFamily.user_id == user_id, RefreshTokenFamily.expires_at <= now
        )
    )


async def insert_family(session: AsyncSession, family: RefreshTokenFamily) -> None:
    session.add(family)
    await session.flush()  # the family row first: its tokens reference it


def insert_refresh_token(session: AsyncSession, token: RefreshToken) -> None:
    """Written with the transaction's next flush or commit."""
    session.add(token)


async def find_family_of_token(session: AsyncSession, token_hash: str) -> RefreshTokenFamily | None:
    return await session.scalar(
        select(RefreshTokenFamily)
        .join(RefreshToken, RefreshToken.family_id == RefreshTokenFamily.id)
        .where(RefreshToken.token_hash == token_hash)
    )


async def reload_family(session: AsyncSession, family: RefreshTokenFamily) -> None:
    """The family as committed now (by whoever held the user's lock before us)."""
    await session.refresh(family)


async def spend_refresh_token(session: AsyncSession, token_hash: str, now: datetime) -> bool:
    """Mark the token used if it was not: of concurrent spends exactly one gets True."""
    spent = await session.scalar(
        update(RefreshToken)
        .where(RefreshToken.token_hash == token_hash, RefreshToken.used_at.is_(None))
        .values(used_at=now)
        .returning(RefreshToken.token_hash)
        .execution_options(synchronize_session=False)
    )
    return spent is not None


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    await _revoke(session, now, RefreshTokenFamily.id == family_id)


async def revoke_family_of_token(session: AsyncSession, token_hash: str, now: datetime) -> None:
    family_id = select(RefreshToken.family_id).where(RefreshToken.token_hash == token_hash)
    await _revoke(session, now, RefreshTokenFamily.id.in_(family_id))


async def revoke_user_families(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    await _revoke(session, now, RefreshTokenFamily.user_id == user_id)


async def _revoke(session: AsyncSession, now: datetime, condition: ColumnElement[bool]) -> None:
    await session.execute(
        update(RefreshTokenFamily)
        .where(condition, RefreshTokenFamily.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
