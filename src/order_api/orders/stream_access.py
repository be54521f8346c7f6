"""Who may open which order stream: checked before a socket is accepted, nothing sent first."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

from order_api.auth.service import caller_for_claims
from order_api.orders.stream import NOT_ALLOWED, TOKEN_REFUSED, Closing, Viewer
from order_api.platform.db import DatabaseReader
from order_api.platform.security import InvalidToken, Tokens


class StreamRefused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.closing = Closing(code, reason)


@dataclass(frozen=True)
class Handshake:
    """What the socket's opening request says about where it comes from."""

    origin: str | None
    host: str | None
    allowed_origins: Collection[str]

    def origin_allowed(self) -> bool:
        # No Origin: not a browser. Same host, or listed in ALLOWED_ORIGINS: a page we trust.
        if self.origin is None or self.origin in self.allowed_origins:
            return True
        try:
            origin_host = urlsplit(self.origin).netloc
        except ValueError:
            return False  # not an origin at all (`http://[`): no page of ours sent it
        return self.host is not None and origin_host == self.host.lower()


async def admit_viewer(
    reader: DatabaseReader,
    tokens: Tokens,
    handshake: Handshake,
    token: str | None,
    customer: str | None,
) -> Viewer:
    """The viewer a token makes, for one customer's stream or (customer None) every order's.

    Order of checks: the token first (4401), then the page's origin (4403), then the id's shape
    (1008), then the right to watch (4403).
    """
    if not token:
        raise StreamRefused(TOKEN_REFUSED, "an access token is required: ?token=...")
    try:
        claims = tokens.verify_access(token)
        caller = await caller_for_claims(reader, claims)
    except InvalidToken:
        raise StreamRefused(
            TOKEN_REFUSED, "the access token is invalid, expired or revoked"
        ) from None
    if not handshake.origin_allowed():
        raise StreamRefused(NOT_ALLOWED, "pages from this origin may not open the stream")
    if customer is None:
        if not caller.is_staff:
            raise StreamRefused(NOT_ALLOWED, "only staff may watch every order")
        customer_id = None
    else:
        try:
            customer_id = uuid.UUID(customer)
        except ValueError:
            raise StreamRefused(1008, "the customer id is not a UUID") from None
        if customer_id != caller.id and not caller.is_staff:
            raise StreamRefused(NOT_ALLOWED, "you may watch only your own orders")
    return Viewer(caller.id, claims.issued_at, claims.expires_at, customer_id)
