from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Response, status
from pydantic.json_schema import SkipJsonSchema

from order_api.auth import service
from order_api.auth.dependencies import CurrentUser
from order_api.auth.schemas import RefreshRequest, TokenPair
from order_api.platform.db import SessionDep
from order_api.platform.errors import problem_responses
from order_api.platform.http import UniqueKeysRoute
from order_api.platform.limits import ClientAddressDep, RateLimitsDep
from order_api.platform.security import PasswordsDep, TokensDep
from order_api.users.password_policy import MAX_LENGTH

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], route_class=UniqueKeysRoute)


def no_store(response: Response) -> None:
    # RFC 6749 §5.1: responses carrying tokens must not be cached.
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


@router.post("/token", responses=problem_responses(401, 429))
async def issue_token(
    session: SessionDep,
    passwords: PasswordsDep,
    tokens: TokensDep,
    rate_limits: RateLimitsDep,
    client: ClientAddressDep,
    response: Response,
    username: Annotated[str, Form(max_length=320, description="The account's e-mail address.")],
    password: Annotated[str, Form(min_length=1, max_length=MAX_LENGTH)],
    # A form cannot send null, so the schema offers only the string.
    grant_type: Annotated[Literal["password"] | SkipJsonSchema[None], Form()] = None,
    scope: Annotated[str, Form(max_length=1000)] = "",
) -> TokenPair:
    """Log in with the OAuth2 password form (`username` is the e-mail address). Attempts, right
    or wrong, are limited per client address and per account (429 with `Retry-After`)."""
    attempt = service.LoginAttempt(username, password, client)
    pair = await service.log_in(session, passwords, tokens, rate_limits, attempt)
    no_store(response)
    return pair


@router.post("/refresh", responses=problem_responses(401))
async def refresh(
    session: SessionDep, tokens: TokensDep, body: RefreshRequest, response: Response
) -> TokenPair:
    """Exchange a refresh token for a new pair. Each refresh token works once; presenting a used
    one again revokes every token of that login."""
    pair = await service.refresh_session(session, tokens, body.refresh_token)
    no_store(response)
    return pair


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def log_out(session: SessionDep, body: RefreshRequest) -> None:
    """End one login: its refresh tokens stop working. Unknown tokens are accepted silently."""
    await service.log_out(session, body.refresh_token)


@router.post(
    "/logout-all", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(401)
)
async def log_out_everywhere(session: SessionDep, caller: CurrentUser) -> None:
    """End every login of the caller: all refresh tokens and all access tokens issued so far."""
    await service.log_out_everywhere(session, caller.id)
