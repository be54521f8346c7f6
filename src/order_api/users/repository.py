"""The accounts' SQL: every statement the users domain runs on `users`.

(What authentication reads of `users`, the caller and the row lock, is in auth/repository.py.)
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.platform.db import fetch_page
from order_api.users.models import Role, User
from order_api.users.schemas import UserQuery


async def find_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def email_taken(session: AsyncSession, email: str) -> bool:
    return await session.scalar(select(User.id).where(User.email == email)) is not None


async def any_admin(session: AsyncSession) -> bool:
    return await session.scalar(select(User.id).where(User.role == Role.ADMIN).limit(1)) is not None


async def add_user(session: AsyncSession, user: User) -> bool:
    """Written at once; False when the e-mail's unique constraint refused it."""
    session.add(user)
    return await save_changes(session)


async def save_changes(session: AsyncSession) -> bool:
    """The session's pending changes written; False when the e-mail's unique constraint refused
    them (another account took the address in the meantime)."""
    try:
        await session.flush()
    except IntegrityError:
        return False
    return True


async def lock_active_admins(session: AsyncSession) -> list[uuid.UUID]:
    """Every active admin's row locked, always in id order, so two of these never deadlock."""
    admins = await session.scalars(
        select(User.id)
        .where(User.role == Role.ADMIN, User.is_active.is_(True))
        .order_by(User.id)
        .with_for_update()
    )
    return list(admins)


async def user_page(session: AsyncSession, query: UserQuery) -> tuple[list[User], int]:
    """One page of accounts, oldest first, and the number matching the filters."""
    conditions: list[ColumnElement[bool]] = []
    if query.email:
        conditions.append(User.email.contains(query.email.lower(), autoescape=True))
    if query.role is not None:
        conditions.append(User.role == query.role)
    if query.is_active is not None:
        conditions.append(User.is_active.is_(query.is_active))
    statement = select(User).where(*conditions).order_by(User.created_at, User.id)
    return await fetch_page(session, query, statement)
