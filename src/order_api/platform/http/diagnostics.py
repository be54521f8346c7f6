"""Routes that exist only with ENVIRONMENT=test, to drive error paths no real route reaches yet."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header
from pydantic import BaseModel, ConfigDict, Field

from order_api.platform.db import SessionDep
from order_api.platform.errors import Unauthorized
from order_api.platform.http.bodies import UniqueKeysRoute

router = APIRouter(prefix="/__test__", include_in_schema=False, route_class=UniqueKeysRoute)
TEST_BEARER = "Bearer let-me-in"


class EchoBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    quantity: int = Field(ge=1, le=100)


class BoomError(RuntimeError):
    """Carries text that must never reach a client: SQL and a secret-looking value."""


@router.post("/echo")
async def echo(body: EchoBody) -> EchoBody:
    return body


@router.get("/boom")
async def boom(session: SessionDep, error: Literal["boom", "timeout"] = "boom") -> None:
    if error == "timeout":
        # An OSError from no database: a bug to report as a 500, not a database outage.
        raise TimeoutError("a timeout nobody caught")
    raise BoomError("SELECT secret FROM users WHERE password = 'hunter2'")


@router.get("/protected")
async def protected(authorization: Annotated[str | None, Header()] = None) -> dict[str, str]:
    if authorization != TEST_BEARER:
        raise Unauthorized(error="invalid_token")
    return {"status": "ok"}
