from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, status

from order_api.auth.dependencies import AdminUser, CurrentUser, StaffUser
from order_api.platform.db import SessionDep
from order_api.platform.errors import problem_responses
from order_api.platform.http import UniqueKeysRoute
from order_api.platform.limits import ClientAddressDep, RateLimitsDep
from order_api.platform.security import PasswordsDep
from order_api.users import service
from order_api.users.schemas import (
    OwnProfileUpdate,
    UserCreate,
    UserPage,
    UserQuery,
    UserRead,
    UserUpdate,
)

router = APIRouter(prefix="/api/v1/users", tags=["users"], route_class=UniqueKeysRoute)


@router.post("", status_code=status.HTTP_201_CREATED, responses=problem_responses(409, 429))
async def register(
    session: SessionDep,
    passwords: PasswordsDep,
    rate_limits: RateLimitsDep,
    client: ClientAddressDep,
    body: UserCreate,
) -> UserRead:
    """Create a customer account; a welcome e-mail follows in the background. Registrations are
    limited per client address (429 with `Retry-After`)."""
    user = await service.sign_up(session, passwords, rate_limits, client, body)
    return UserRead.model_validate(user)


@router.get("/me", responses=problem_responses(401))
async def read_me(session: SessionDep, caller: CurrentUser) -> UserRead:
    return UserRead.model_validate(await service.get_user(session, caller.id))


@router.patch("/me", responses=problem_responses(401, 403, 409, 429))
async def update_me(
    session: SessionDep,
    passwords: PasswordsDep,
    rate_limits: RateLimitsDep,
    client: ClientAddressDep,
    caller: CurrentUser,
    body: OwnProfileUpdate,
) -> UserRead:
    """Change your name, e-mail or password; the last two need `current_password`. A new
    password ends every login, this one included. A `current_password` check counts as a login
    attempt of the account and the client address (429 with `Retry-After` past the limits)."""
    updated = await service.update_own_profile(
        session, passwords, rate_limits, client, caller, body
    )
    return UserRead.model_validate(updated)


@router.get("", responses=problem_responses(401, 403))
async def list_users(
    session: SessionDep, _: StaffUser, query: Annotated[UserQuery, Query()]
) -> UserPage:
    """Accounts, oldest first, filtered by part of the e-mail, role and active flag."""
    users, total = await service.list_users(session, query)
    items = [UserRead.model_validate(user) for user in users]
    return UserPage(items=items, total=total, page=query.page, page_size=query.page_size)


# `:uuid`: "me" is no id, so `DELETE /me` is a 405 rather than a call with a bad id.
@router.get("/{user_id:uuid}", responses=problem_responses(401, 403, 404))
async def read_user(session: SessionDep, _: AdminUser, user_id: uuid.UUID) -> UserRead:
    return UserRead.model_validate(await service.get_user(session, user_id))


@router.patch("/{user_id:uuid}", responses=problem_responses(401, 403, 404, 409))
async def update_user(
    session: SessionDep, _: AdminUser, user_id: uuid.UUID, body: UserUpdate
) -> UserRead:
    """Change an account's name, e-mail, role or active flag. A role change or a deactivation
    applies to that user's very next request."""
    return UserRead.model_validate(await service.update_user(session, user_id, body))


@router.delete(
    "/{user_id:uuid}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 404, 409),
)
async def delete_user(session: SessionDep, actor: CurrentUser, user_id: uuid.UUID) -> None:
    """Deactivate an account (admin, or the user themself): it can no longer log in, and every
    token it holds stops working. Nothing is erased."""
    await service.deactivate_user(session, actor, user_id)
