"""Logins, refresh-token rotation with reuse detection, logout, and who is calling."""

from __future__ import annotations

import math
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.auth import repository
from order_api.auth.models import RefreshToken, RefreshTokenFamily
from order_api.auth.repository import CallerRecord
from order_api.auth.schemas import TokenPair
from order_api.platform.db import DatabaseReader, continue_in_turn
from order_api.platform.errors import Unauthorized
from order_api.platform.fields import normalise_email
from order_api.platform.limits import RateLimits
from order_api.platform.security import (
    AccessClaims,
    InvalidToken,
    Passwords,
    Tokens,
    hash_refresh_token,
)
from order_api.users.models import Role, User

logger = structlog.get_logger(__name__)
STAFF_ROLES = frozenset({Role.STAFF, Role.ADMIN})


class InvalidCredentials(Unauthorized):
    code, title = "invalid_credentials", "Invalid credentials"
    # One answer for unknown e-mail, wrong password and deactivated account: no enumeration.
    default_detail = "The e-mail or password is incorrect."


class InvalidRefreshToken(Unauthorized):
    code, title = "invalid_refresh_token", "Invalid refresh token"
    default_detail = "The refresh token is unknown, used, expired or revoked; log in again."

    def __init__(self) -> None:
        super().__init__(error="invalid_token")


@dataclass(frozen=True)
class LoginAttempt:
    email: str
    password: str = field(repr=False)
    client: str  # the client's address, for the per-address limit


@dataclass(frozen=True)
class Caller:
    """Who is calling, as committed when the request read them (active, tokens not revoked)."""

    id: uuid.UUID
    email: str
    full_name: str
    role: Role

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES


async def log_in(
    session: AsyncSession,
    passwords: Passwords,
    tokens: Tokens,
    rate_limits: RateLimits,
    attempt: LoginAttempt,
) -> TokenPair:
    # Counted before the password is looked at: a concurrent burst cannot outrun the limit.
    await rate_limits.check_login(attempt.client, attempt.email)
    email, password = attempt.email, attempt.password
    user = await _find_by_email(session, email)
    # Nothing is held while Argon2 runs (~35 ms): no pooled connection, no SQLite write lock.
    await session.commit()
    stored_hash = user.hashed_password if user else None
    matches, new_hash = await passwords.verify(password, stored_hash, caller=attempt.client)
    if user is None or not matches:
        reason = "unknown_email" if user is None else "wrong_password"
        logger.info("login_failed", reason=reason, user_id=str(user.id) if user else None)
        raise InvalidCredentials()
    user_id, verified_hash = user.id, user.hashed_password
    await continue_in_turn(session)
    # Locked, then checked again: a password change or deactivation that committed while Argon2
    # ran wins, and one still to come will see (and revoke) the session this login creates.
    user = await lock_user(session, user_id)
    if user is None or not user.is_active or user.hashed_password != verified_hash:
        logger.info("login_failed", reason="inactive_or_changed", user_id=str(user_id))
        raise InvalidCredentials()
    if new_hash is not None:
        user.hashed_password = new_hash  # the cost settings changed: upgrade the stored hash
        logger.info("password_rehashed", user_id=str(user.id))
    now = datetime.now(UTC)
    # Expired logins of this user are dead weight; dropping them here keeps the tables bounded.
    await repository.delete_expired_families(session, user.id, now)
    family = RefreshTokenFamily(
        id=uuid.uuid4(), user_id=user.id, created_at=now, expires_at=now + tokens.refresh_lifetime
    )
    await repository.insert_family(session, family)
    return _issue_pair(session, tokens, user.id, family.id, now)


async def refresh_session(session: AsyncSession, tokens: Tokens, refresh_token: str) -> TokenPair:
    """Spend a refresh token for a new pair; spending one twice revokes its whole family."""
    token_hash = hash_refresh_token(refresh_token)
    family = await repository.find_family_of_token(session, token_hash)
    if family is None:
        raise InvalidRefreshToken()
    # Logins, refreshes and revocations of one user take turns on the user's row.
    user = await lock_user(session, family.user_id)
    await repository.reload_family(session, family)  # as committed by the lock's last holder
    now = datetime.now(UTC)
    if user is None or not user.is_active:
        raise InvalidRefreshToken()
    if family.revoked_at is not None or family.expires_at <= now:
        raise InvalidRefreshToken()
    # The conditional UPDATE is the race's referee: of concurrent spends exactly one matches.
    if not await repository.spend_refresh_token(session, token_hash, now):
        await repository.revoke_family(session, family.id, now)
        # The revocation must outlive the 401 this request answers with, so it commits here.
        await session.commit()
        logger.warning("refresh_token_reused", user_id=str(user.id), family_id=str(family.id))
        raise InvalidRefreshToken()
    return _issue_pair(session, tokens, user.id, family.id, now)


async def log_out(session: AsyncSession, refresh_token: str) -> None:
    """Revoke the token's family. Unknown tokens are ignored, as RFC 7009 revocation does."""
    token_hash = hash_refresh_token(refresh_token)
    await repository.revoke_family_of_token(session, token_hash, datetime.now(UTC))


async def log_out_everywhere(session: AsyncSession, user_id: uuid.UUID) -> None:
    locked = await lock_user(session, user_id)
    if locked is not None:
        await end_all_sessions(session, locked)


async def end_all_sessions(session: AsyncSession, user: User) -> None:
    """Every refresh family revoked, every access token issued so far refused.

    The caller holds the user's row lock (`lock_user`), so no login or refresh slips in between.
    """
    now = datetime.now(UTC)
    user.tokens_valid_after = now
    await repository.revoke_user_families(session, user.id, now)


async def lock_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The user as committed now, its row locked until this transaction ends: logins, refreshes
    and every change that ends sessions take turns on it."""
    return await repository.lock_user(session, user_id)


async def authenticate(session: AsyncSession, tokens: Tokens, access_token: str) -> Caller:
    """The caller an access token speaks for, read fresh (role included) in the request's
    transaction: active, and no revocation after the token was issued."""
    claims = tokens.verify_access(access_token)
    return _honoured(claims, await repository.find_caller(session, claims.user_id))


async def authenticate_public_read(
    reader: DatabaseReader, tokens: Tokens, access_token: str
) -> Caller:
    """`authenticate` for a read that holds no session: the same row and the same checks."""
    return await caller_for_claims(reader, tokens.verify_access(access_token))


async def caller_for_claims(reader: DatabaseReader, claims: AccessClaims) -> Caller:
    """The caller of claims already verified (a stream handshake keeps the claims' times)."""
    return _honoured(claims, await repository.read_caller(reader, claims.user_id))


def _honoured(claims: AccessClaims, found: CallerRecord | None) -> Caller:
    """The caller, if active and no revocation came after the token was issued."""
    if found is None or not found.is_active:
        raise InvalidToken()
    if claims.issued_at < found.tokens_valid_after.timestamp():
        raise InvalidToken()
    return Caller(found.id, found.email, found.full_name, found.role)


async def revocation_cutoffs(
    session: AsyncSession, user_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, float]:
    """Per user, the instant before which their access tokens no longer count (a token issued
    earlier is revoked); infinity for a deactivated or deleted account."""
    cutoffs = dict.fromkeys(user_ids, math.inf)
    valid_after = await repository.tokens_valid_after_of_active(session, user_ids)
    cutoffs.update({user_id: instant.timestamp() for user_id, instant in valid_after.items()})
    return cutoffs


async def _find_by_email(session: AsyncSession, email: str) -> User | None:
    try:
        normalised = normalise_email(email)
    except ValueError:
        return None  # not an address at all, so no account: the caller still verifies a hash
    return await repository.find_user_by_email(session, normalised)


def _issue_pair(
    session: AsyncSession, tokens: Tokens, user_id: uuid.UUID, family_id: uuid.UUID, now: datetime
) -> TokenPair:
    refresh = tokens.new_refresh()
    token = RefreshToken(token_hash=refresh.token_hash, family_id=family_id, created_at=now)
    repository.insert_refresh_token(session, token)
    access = tokens.issue_access(user_id, now)
    return TokenPair(
        access_token=access.token, expires_in=access.expires_in, refresh_token=refresh.token
    )
