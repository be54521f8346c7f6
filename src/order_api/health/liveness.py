"""`GET /health/live` answered at the edge of the middleware stack, before routing.

Probes call it every few seconds on every process, and it must never wait on anything: it gets
the request id, the access line, the metrics and the security and CORS headers, and skips the
rest (routing, dependencies, the rate limiter, which exempts probes anyway). Routed through
FastAPI it cost 2.5x a plain FastAPI JSON route (docs/benchmarks.md). The route in the health
router declares the same answer in the OpenAPI schema; HEAD gets its headers without the body.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from order_api.health.schemas import Liveness

LIVENESS_PATH = "/health/live"
LIVENESS_BODY = Liveness().model_dump_json().encode()


@dataclass(frozen=True)
class AnsweredRoute:
    """What the access line and the metrics read of a matched route: its template."""

    path_format: str


class LivenessMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route = AnsweredRoute(LIVENESS_PATH)
        self.headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(LIVENESS_BODY)).encode()),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != LIVENESS_PATH
            or scope["method"] not in ("GET", "HEAD")
        ):
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        await send({"type": "http.response.start", "status": 200, "headers": list(self.headers)})
        body = LIVENESS_BODY if scope["method"] == "GET" else b""
        await send({"type": "http.response.body", "body": body})
