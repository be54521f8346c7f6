"""The edge: every HTTP request's way in and out, as one ASGI layer in front of routing.

In order: the request id and, at the end, the access line and metrics; CORS preflights; fixed
answers (`/health/live`); HEAD served as GET without the body; the body size limit; the general
rate limit; an unexpected exception turned into a bare 500 problem. On the way out every
response, these included, gets the security headers, the CORS grant and `X-Request-ID`.

One layer, not eight: under uvicorn each ASGI layer cost 5-8 µs a request, and the eight were a
fifth of a product read. The rules stay in their modules (headers, telemetry,
limits); this module only puts them in order.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field

import structlog
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from order_api.platform.errors import AppError, PayloadTooLarge, TooManyRequests, too_large_detail
from order_api.platform.http.headers import CorsPolicy, SecurityHeaders
from order_api.platform.limits.clients import Networks, limited_address
from order_api.platform.limits.rules import RateLimits
from order_api.platform.telemetry.logs import (
    REQUEST_ID_HEADER,
    ROUTE_TEMPLATE,
    begin_request,
    end_request,
    observe_websocket,
    request_id_from,
    route_template,
)

logger = structlog.get_logger("order_api.platform.errors")
_REQUEST_ID = REQUEST_ID_HEADER.encode()
_OURS = frozenset({_REQUEST_ID})
_NONE_GRANTED: list[tuple[bytes, bytes]] = []


@dataclass(frozen=True)
class FixedAnswer:
    """A GET answered at the edge, before routing, always the same; the access line and the
    metrics name it by `template`, as they name a matched route by its template."""

    template: str
    body: bytes
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[ROUTE_TEMPLATE] = self.template
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body})

    @classmethod
    def json(cls, path: str, body: bytes) -> FixedAnswer:
        length = str(len(body)).encode()
        return cls(
            path, body, [(b"content-type", b"application/json"), (b"content-length", length)]
        )


@dataclass(frozen=True)
class EdgeRules:
    security_headers: SecurityHeaders
    cors: CorsPolicy
    max_body_size: int
    # None: rate limits off.
    rate_limit_proxies: Networks | None
    fixed_answers: Mapping[str, FixedAnswer] = field(default_factory=dict)


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, rules: EdgeRules) -> None:
        self.app = app
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await observe_websocket(self.app, scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rules = self.rules
        request_ids, origin, declared_length, forwarded = _read_head(scope["headers"])
        request_id = request_id_from(request_ids)
        token = begin_request(request_id)
        started = time.perf_counter()
        # A preflight's answer carries its own CORS headers; any other gets the grant and Vary.
        preflight, granted = None, _NONE_GRANTED
        if origin is not None:
            preflight = rules.cors.preflight(scope, origin)
            if preflight is None:
                granted = rules.cors.granted(origin)
        head = scope["method"] == "HEAD"
        status, response_started = 500, False

        # Not a coroutine: it hands on `send`'s own awaitable, one frame fewer per message.
        def send_decorated(message: Message) -> Awaitable[None]:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                security = rules.security_headers
                kept, added = security.kept_and_added(
                    message.get("headers", ()), _OURS, vary_origin=preflight is None
                )
                ours = [*granted, (_REQUEST_ID, request_id.encode())]
                message["headers"] = kept + security.added[added] + ours
            elif head and message["type"] == "http.response.body":
                message = {**message, "body": b""}  # HEAD: the GET's headers, no body
            return send(message)

        # One coroutine, no helpers awaited per request: each await level costs on every resume.
        try:
            answer: ASGIApp | None = preflight
            if answer is None:
                answer = self._answer_at_the_edge(scope, declared_length)
            address = None
            if answer is None and rules.rate_limit_proxies is not None:
                address = limited_address(scope, rules.rate_limit_proxies, forwarded)
            if address is not None:
                limits: RateLimits = scope["app"].state.rate_limits
                try:
                    if not limits.request_passes_at_once(address):
                        await limits.check_request(address)
                except TooManyRequests as refusal:
                    answer = refusal.to_response()
            if answer is not None:
                await answer(scope, receive, send_decorated)
            elif head:
                # FastAPI routes accept only the methods they declare; probes and proxies send
                # HEAD, answered wherever GET is (RFC 9110 §9.3.2).
                get_scope = {**scope, "method": "GET"}
                counted = _within_limit(receive, rules.max_body_size)
                try:
                    await self.app(get_scope, counted, send_decorated)
                finally:  # the access line and metrics name the GET's route, a 500's too
                    scope[ROUTE_TEMPLATE] = route_template(get_scope)
            else:
                await self.app(scope, _within_limit(receive, rules.max_body_size), send_decorated)
        except Exception:
            logger.exception("unhandled_error", path=scope["path"])
            if response_started:
                raise
            # Here, not in Starlette's outermost handler: the 500 keeps the request id and headers.
            await AppError().to_response()(scope, receive, send_decorated)
        finally:
            end_request(scope, token, status, time.perf_counter() - started)

    def _answer_at_the_edge(self, scope: Scope, declared_length: bytes | None) -> ASGIApp | None:
        """A fixed answer, or a 413 for a declared body over the limit; None to go on."""
        answer = self.rules.fixed_answers.get(scope["path"])
        if answer is not None and scope["method"] in ("GET", "HEAD"):
            return answer
        if declared_length is None:
            return None
        try:
            declared = int(declared_length)
        except ValueError:
            return None
        limit = self.rules.max_body_size
        if declared > limit:
            return PayloadTooLarge(too_large_detail(limit)).to_response()
        return None


def _within_limit(receive: Receive, limit: int) -> Receive:
    """`receive`, counting the body as it arrives: past the limit, a 413."""
    received = 0

    async def receive_within_limit() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                # FastAPI re-raises HTTPException from body parsing; our handler renders it.
                raise StarletteHTTPException(413, too_large_detail(limit))
        return message

    return receive_within_limit


def _read_head(
    headers: Iterable[tuple[bytes, bytes]],
) -> tuple[list[bytes], str | None, bytes | None, bool]:
    """What the edge reads of the request's headers, in one pass: every X-Request-ID, the first
    Origin and Content-Length, and whether any X-Forwarded-For came."""
    request_ids: list[bytes] = []
    origin: str | None = None
    declared_length: bytes | None = None
    forwarded = False
    for name, value in headers:
        if name == _REQUEST_ID:
            request_ids.append(value)
        elif name == b"origin":
            if origin is None:
                origin = value.decode("latin-1")
        elif name == b"content-length":
            if declared_length is None:
                declared_length = value
        elif name == b"x-forwarded-for":
            forwarded = True
    return request_ids, origin, declared_length, forwarded
