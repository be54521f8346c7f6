"""Hand-made access tokens: valid ones minted with the test secret, and forgeries of them."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from tests.support import TEST_SECRET_KEY


@dataclass(frozen=True)
class FromNow:
    """A time claim relative to when the token is minted, not to when the tests were collected."""

    seconds: float


def claims_for(user_id: uuid.UUID | str, **changes: Any) -> dict[str, Any]:
    now = time.time()
    claims: dict[str, Any] = {
        "sub": str(user_id),
        "type": "access",
        "iss": "order-api",
        "aud": "order-api",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(
        {
            name: now + value.seconds if isinstance(value, FromNow) else value
            for name, value in changes.items()
        }
    )
    return {name: value for name, value in claims.items() if value is not None}


def mint(claims: dict[str, Any], key: str = TEST_SECRET_KEY, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
