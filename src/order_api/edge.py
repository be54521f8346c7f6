"""Protections at the edge of the service, in front of routing."""

from __future__ import annotations

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from order_api.errors import PayloadTooLarge, too_large_detail


class BodySizeLimitMiddleware:
    """Rejects bodies over the limit, declared or chunked, with a 413 problem.

    Starlette's own limiter answers text/plain when a route responds without reading the body.
    """

    def __init__(self, app: ASGIApp, max_body_size: int) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_size:
            response = PayloadTooLarge(too_large_detail(self.max_body_size)).to_response()
            await response(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_size:
                    # FastAPI re-raises HTTPException from body parsing; our handler renders it.
                    raise StarletteHTTPException(413, too_large_detail(self.max_body_size))
            return message

        await self.app(scope, receive_within_limit, send)


class HeadAsGetMiddleware:
    """Answers HEAD wherever GET is served (RFC 9110 §9.3.2): the GET's headers, no body.

    FastAPI routes accept only the methods they declare; probes and proxies send HEAD.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        get_scope = {**scope, "method": "GET"}
        await self.app(get_scope, receive, send_without_body)
        if "route" in get_scope:  # the access line and metrics name the route, as for the GET
            scope["route"] = get_scope["route"]


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
