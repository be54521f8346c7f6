"""Typed dependencies: who is calling (`CurrentUser`) and whether their role may act."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from order_api.auth import service
from order_api.platform.db.engine import SessionDep
from order_api.platform.errors import Forbidden, Unauthorized
from order_api.platform.security import Passwords, Tokens
from order_api.users.models import Role, User

TOKEN_URL = "/api/v1/auth/token"  # noqa: S105 - a path, not a secret
# Reads `Authorization: Bearer` only (never a query string) and gives Swagger its Authorize button.
bearer_token = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


async def get_passwords(request: Request) -> Passwords:
    passwords: Passwords = request.app.state.passwords
    return passwords


async def get_tokens(request: Request) -> Tokens:
    tokens: Tokens = request.app.state.tokens
    return tokens


PasswordsDep = Annotated[Passwords, Depends(get_passwords)]
TokensDep = Annotated[Tokens, Depends(get_tokens)]


async def current_user(
    request: Request,
    session: SessionDep,
    token: Annotated[str | None, Depends(bearer_token)],
) -> User:
    if not token:
        raise Unauthorized()
    # The tokens straight from the app, not through TokensDep: one dependency less per request.
    return await service.authenticate(session, request.app.state.tokens, token)


CurrentUser = Annotated[User, Depends(current_user)]


async def current_caller(
    request: Request,
    session: SessionDep,
    token: Annotated[str | None, Depends(bearer_token)],
) -> service.Caller:
    """`current_user` for routes that only read who is calling: a row, not an ORM object."""
    if not token:
        raise Unauthorized()
    return await service.authenticate_caller(session, request.app.state.tokens, token)


CurrentCaller = Annotated[service.Caller, Depends(current_caller)]


async def optional_role(request: Request, token: str | None) -> Role | None:
    """The caller's role on a public read, from the bearer token (`bearer_token`'s): None when
    anonymous, 401 when the token sent is bad. No session: a public read runs compiled SELECTs
    only."""
    if not token:
        return None
    return await service.caller_role(request.app.state.reader, request.app.state.tokens, token)


def require_role(*roles: Role) -> Callable[[User], Awaitable[User]]:
    """A dependency that lets through only the given roles: 401 anonymous, 403 the others."""
    allowed = frozenset(roles)

    async def user_with_role(user: CurrentUser) -> User:
        if user.role not in allowed:
            raise Forbidden(f"This action needs the role {' or '.join(sorted(allowed))}.")
        return user

    return user_with_role


StaffUser = Annotated[User, Depends(require_role(Role.STAFF, Role.ADMIN))]
AdminUser = Annotated[User, Depends(require_role(Role.ADMIN))]
