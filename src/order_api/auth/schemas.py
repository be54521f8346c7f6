from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TokenPair(BaseModel):
    access_token: str = Field(description="A JWT for `Authorization: Bearer`; short-lived.")
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 type name
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str = Field(description="Opaque and single-use: exchange it at /auth/refresh.")


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Ours are 43 characters; the bound keeps hashing and lookups cheap for anything sent.
    refresh_token: str = Field(min_length=1, max_length=512)
