"""Accounts: registration, profile changes, the admin's changes, soft deletion, listings."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.auth import service as auth_service
from order_api.auth.service import Caller
from order_api.notifications.emails import queue_email
from order_api.platform.db import continue_in_turn
from order_api.platform.errors import Conflict, Forbidden, NotFound
from order_api.platform.limits import RateLimits
from order_api.platform.security import Passwords
from order_api.users import repository
from order_api.users.models import Role, User
from order_api.users.schemas import OwnProfileUpdate, UserCreate, UserQuery, UserUpdate

logger = structlog.get_logger(__name__)
FIRST_ADMIN_EMAIL = "admin@example.com"


class EmailTaken(Conflict):
    code, title = "email_taken", "E-mail already registered"
    default_detail = "An account with this e-mail address already exists."


class WrongCurrentPassword(Forbidden):
    code, title = "invalid_current_password", "Current password is incorrect"
    default_detail = "current_password does not match this account's password."


class LastAdmin(Conflict):
    code, title = "last_admin", "Last admin"
    default_detail = "This change would leave the shop without an active admin."


class UserNotFound(NotFound):
    default_detail = "No user with this id."


async def sign_up(
    session: AsyncSession,
    passwords: Passwords,
    rate_limits: RateLimits,
    client: str,
    data: UserCreate,
) -> User:
    """Registration by the public: a customer account, limited per client address; the limit
    also bounds what `409 email_taken` tells about who has an account (SPEC §5.1)."""
    await rate_limits.check_registration(client)
    return await register_user(session, passwords, data, caller=client)


async def register_user(
    session: AsyncSession,
    passwords: Passwords,
    data: UserCreate,
    role: Role = Role.CUSTOMER,
    caller: str | None = None,
) -> User:
    """A new account; customers also get a welcome e-mail, sent only if the account commits.
    `caller`: the client's address, whose turn at hashing this is (None: the command line)."""
    # Hash before touching the database, so no connection or SQLite lock waits on Argon2.
    hashed_password = await passwords.hash(data.password, caller=caller)
    await _ensure_email_free(session, data.email)
    now = datetime.now(UTC)
    user = User(
        id=uuid.uuid4(),
        email=data.email,
        full_name=data.full_name,
        hashed_password=hashed_password,
        role=role,
        is_active=True,
        tokens_valid_after=now,
        created_at=now,
        updated_at=now,
    )
    if not await repository.add_user(session, user):
        raise EmailTaken()  # a concurrent registration won the unique constraint
    if role is Role.CUSTOMER:
        # Nothing the registrant typed: the address is unverified, so the mail may reach a stranger
        # (even the address's own `+tag` is the registrant's text: it shows only in To).
        context: dict[str, str] = {}
        await queue_email(session, "welcome", user.email, context)
    logger.info("user_registered", user_id=str(user.id), role=role.value)
    return user


async def update_own_profile(
    session: AsyncSession,
    passwords: Passwords,
    rate_limits: RateLimits,
    client: str,
    caller: Caller,
    data: OwnProfileUpdate,
) -> User:
    """The caller's own change; a `current_password` check counts as a login attempt, against
    the same per-account and per-address limits, so it is no way round them to guess passwords.
    """
    verified_hash: str | None = None
    new_hash: str | None = None
    if data.current_password is not None:
        verified_hash = (await get_user(session, caller.id)).hashed_password
        await session.commit()  # release the connection and SQLite lock while Argon2 runs
        await rate_limits.check_login(client, caller.email)
        matches, _ = await passwords.verify(data.current_password, verified_hash, caller=client)
        if not matches:
            logger.info("current_password_rejected", user_id=str(caller.id))
            raise WrongCurrentPassword()
        if data.password is not None:
            new_hash = await passwords.hash(data.password, caller=client)
        await continue_in_turn(session)
    user = await _locked(session, caller.id)
    if data.current_password is not None and user.hashed_password != verified_hash:
        # Rehashed at a login, or changed, while we hashed: check again, this once under the lock.
        stored_hash = user.hashed_password
        matches, _ = await passwords.verify(data.current_password, stored_hash, caller=client)
        if not matches:
            raise WrongCurrentPassword()
    if data.email is not None and data.email != user.email:
        await _ensure_email_free(session, data.email)
        user.email = data.email
    if data.full_name is not None:
        user.full_name = data.full_name
    if new_hash is not None:
        user.hashed_password = new_hash
        await auth_service.end_all_sessions(session, user)
        logger.info("password_changed", user_id=str(user.id))
    return await _save(session, user)


async def update_user(session: AsyncSession, user_id: uuid.UUID, data: UserUpdate) -> User:
    """An admin's change; a new role or a deactivation takes effect on the very next request."""
    target = await get_user(session, user_id)
    demoted = data.role is not None and data.role is not Role.ADMIN
    if target.role is Role.ADMIN and (demoted or data.is_active is False):
        await _lock_admins_keeping_one(session, leaving=user_id)
    user = await _locked(session, user_id)
    if data.email is not None and data.email != user.email:
        await _ensure_email_free(session, data.email)
        user.email = data.email
    if data.full_name is not None:
        user.full_name = data.full_name
    if data.role is not None and data.role is not user.role:
        user.role = data.role
        user.tokens_valid_after = datetime.now(UTC)
    if data.is_active is not None and data.is_active is not user.is_active:
        user.is_active = data.is_active
        if not data.is_active:
            await auth_service.end_all_sessions(session, user)
    return await _save(session, user)


async def deactivate_user(session: AsyncSession, actor: Caller, user_id: uuid.UUID) -> None:
    """Soft delete, by an admin or the user themself; to anyone else the account does not exist."""
    if actor.role is not Role.ADMIN and actor.id != user_id:
        raise UserNotFound()
    target = await get_user(session, user_id)
    if target.role is Role.ADMIN and target.is_active:
        await _lock_admins_keeping_one(session, leaving=user_id)
    user = await _locked(session, user_id)
    if not user.is_active:
        return
    user.is_active = False
    await auth_service.end_all_sessions(session, user)
    await _save(session, user)
    logger.info("user_deactivated", user_id=str(user.id), by=str(actor.id))


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await repository.find_user(session, user_id)
    if user is None:
        raise UserNotFound()
    return user


async def list_users(session: AsyncSession, query: UserQuery) -> tuple[list[User], int]:
    return await repository.user_page(session, query)


async def create_first_admin(session: AsyncSession, passwords: Passwords) -> str | None:
    """On a shop with no admin at all, create one; return its generated password (else None)."""
    if await repository.any_admin(session):
        return None
    password = secrets.token_urlsafe(18)
    data = UserCreate(email=FIRST_ADMIN_EMAIL, password=password, full_name="Administrator")
    await register_user(session, passwords, data, role=Role.ADMIN)
    return password


async def _ensure_email_free(session: AsyncSession, email: str) -> None:
    if await repository.email_taken(session, email):
        raise EmailTaken()


async def _lock_admins_keeping_one(session: AsyncSession, leaving: uuid.UUID) -> None:
    """Lock every active admin and refuse the change if `leaving` is the last: two admins
    demoting each other concurrently take turns."""
    admins = await repository.lock_active_admins(session)
    if not any(admin_id != leaving for admin_id in admins):
        raise LastAdmin()


async def _locked(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await auth_service.lock_user(session, user_id)
    if user is None:
        raise UserNotFound()
    return user


async def _save(session: AsyncSession, user: User) -> User:
    user.updated_at = datetime.now(UTC)
    if not await repository.save_changes(session):
        raise EmailTaken()  # another account took the address in the meantime
    return user
