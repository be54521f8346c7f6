"""Security headers and CORS on every HTTP response: errors and middleware answers included."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from order_api.errors import CorsRefused

# What a JSON (or any non-page) answer needs: nothing may load, nothing may frame it.
API_CSP = "default-src 'none'; frame-ancestors 'none'"
# The board's page: its own script and stylesheet, fetches and its same-origin ws:// socket.
BOARD_CSP = "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
HSTS = "max-age=63072000; includeSubDomains"

CORS_METHODS = ("GET", "POST", "PATCH", "DELETE", "OPTIONS")
CORS_REQUEST_HEADERS = ("authorization", "content-type", "idempotency-key", "x-request-id")
CORS_EXPOSED_HEADERS = ("x-request-id", "idempotent-replayed", "retry-after")
# Browsers cap this anyway (Chromium at 2 h); 10 min lets a changed list take effect soon.
PREFLIGHT_MAX_AGE_SECONDS = 600

_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def inline_script_hashes(html: bytes) -> str:
    """CSP `script-src` sources that allow exactly the page's inline scripts, byte for byte."""
    digests = (hashlib.sha256(script).digest() for script in _INLINE_SCRIPT.findall(html))
    return " ".join(f"'sha256-{base64.b64encode(digest).decode()}'" for digest in digests)


# Set unless the route chose its own (a page's CSP, a static file's caching).
DEFAULT_SECURITY_HEADERS = {"Content-Security-Policy": API_CSP, "Cache-Control": "no-store"}


def fixed_security_headers(*, strict_transport_security: bool) -> dict[str, str]:
    """The headers every response carries, whatever its route says."""
    fixed = {
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
    }
    if strict_transport_security:
        fixed["Strict-Transport-Security"] = HSTS
    return fixed


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response, whoever made it.

    A route may set its own `Content-Security-Policy` (pages) or `Cache-Control` (static files);
    the other headers are fixed.
    """

    def __init__(self, app: ASGIApp, *, strict_transport_security: bool) -> None:
        self.app = app
        self.fixed = fixed_security_headers(strict_transport_security=strict_transport_security)
        self.defaults = DEFAULT_SECURITY_HEADERS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.update(self.fixed)
                for name, value in self.defaults.items():
                    headers.setdefault(name, value)
                del headers["X-Powered-By"]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class CorsMiddleware:
    """CORS for the origins in `ALLOWED_ORIGINS`: an exact echo, never credentials.

    Starlette's CORSMiddleware refuses a preflight in text/plain; ours is a problem like any error.
    """

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str]) -> None:
        self.app = app
        # Browsers send the origin lower-case and without a path; accept lists written otherwise.
        origins = {origin.strip().rstrip("/").lower() for origin in allowed_origins}
        self.any_origin = "*" in origins
        self.allowed_origins = frozenset(origins - {"*"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_headers = Headers(scope=scope)
        origin = request_headers.get("origin")
        is_preflight = "access-control-request-method" in request_headers
        if scope["method"] == "OPTIONS" and origin and is_preflight:
            await self._preflight(origin, request_headers)(scope, receive, send)
            return
        allowed_origin = self._allow_origin(origin)

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # The answer differs by Origin, so caches must key on it, allowed or not.
                headers.add_vary_header("Origin")
                if allowed_origin:
                    headers["Access-Control-Allow-Origin"] = allowed_origin
                    headers["Access-Control-Expose-Headers"] = ", ".join(CORS_EXPOSED_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _allow_origin(self, origin: str | None) -> str | None:
        """The `Access-Control-Allow-Origin` value for this origin, or None when refused."""
        if origin is None:
            return None
        if self.any_origin:
            return "*"
        return origin if origin in self.allowed_origins else None

    def _preflight(self, origin: str, request_headers: Headers) -> Response:
        allowed_origin = self._allow_origin(origin)
        method = request_headers["access-control-request-method"]
        requested = request_headers.get("access-control-request-headers", "")
        asked_headers = [name.strip().lower() for name in requested.split(",") if name.strip()]
        refused_headers = [name for name in asked_headers if name not in CORS_REQUEST_HEADERS]
        if not allowed_origin:
            detail = "This origin may not call the API from a browser."
        elif method not in CORS_METHODS:
            detail = f"Cross-origin requests may not use the method {method[:32]!r}."
        elif refused_headers:
            detail = f"Cross-origin requests may not send the header {refused_headers[0][:64]!r}."
        else:
            return Response(
                status_code=204,
                headers={
                    "Access-Control-Allow-Origin": allowed_origin,
                    "Access-Control-Allow-Methods": ", ".join(CORS_METHODS),
                    "Access-Control-Allow-Headers": ", ".join(CORS_REQUEST_HEADERS),
                    "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_SECONDS),
                    "Vary": "Origin",
                },
            )
        return CorsRefused(detail, headers={"Vary": "Origin"}).to_response()
