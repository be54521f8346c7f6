"""Who is calling, as one `Caller`: `CurrentUser` for any signed-in caller, `StaffUser` and
`AdminUser` the same with a role check, `OptionalUser` for public reads (None when anonymous)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends
from fastapi.requests import HTTPConnection
from fastapi.security import OAuth2PasswordBearer

from order_api.auth import service
from order_api.auth.service import STAFF_ROLES, Caller
from order_api.platform.db import SessionDep, request_reader
from order_api.platform.errors import Forbidden, Unauthorized
from order_api.platform.security import TokensDep, app_tokens
from order_api.users.models import Role

TOKEN_URL = "/api/v1/auth/token"  # noqa: S105 - a path, not a secret
# Reads `Authorization: Bearer` only (never a query string) and gives Swagger its Authorize button.
bearer_token = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)
BearerToken = Annotated[str | None, Depends(bearer_token)]


async def current_user(session: SessionDep, tokens: TokensDep, token: BearerToken) -> Caller:
    """The caller, read in the request's own session and transaction; 401 when anonymous."""
    if not token:
        raise Unauthorized()
    return await service.authenticate(session, tokens, token)


CurrentUser = Annotated[Caller, Depends(current_user)]


def with_role(*roles: Role) -> Callable[[Caller], Awaitable[Caller]]:
    """`CurrentUser`, let through only with one of `roles`: 401 anonymous, 403 the others."""
    allowed = frozenset(roles)
    needed = " or ".join(sorted(allowed))

    async def caller_with_role(caller: CurrentUser) -> Caller:
        if caller.role not in allowed:
            raise Forbidden(f"This action needs the role {needed}.")
        return caller

    return caller_with_role


StaffUser = Annotated[Caller, Depends(with_role(*STAFF_ROLES))]
AdminUser = Annotated[Caller, Depends(with_role(Role.ADMIN))]


async def optional_user(connection: HTTPConnection, token: BearerToken) -> Caller | None:
    """The caller of a public read: None when anonymous, 401 when the token sent is bad. Read
    without a session, as public reads run (decision 95)."""
    if not token:
        return None
    # Providers called, not declared: FastAPI solves each declared one (~8 µs) on every read.
    reader, tokens = await request_reader(connection), await app_tokens(connection)
    return await service.authenticate_public_read(reader, tokens, token)


OptionalUser = Annotated[Caller | None, Depends(optional_user)]
