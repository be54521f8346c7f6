"""Security headers and CORS on every HTTP response (the edge adds them): errors included."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Scope

from order_api.platform.errors import CorsRefused

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

EXPOSED = (b"access-control-expose-headers", ", ".join(CORS_EXPOSED_HEADERS).encode())

_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def inline_script_hashes(html: bytes) -> str:
    """CSP `script-src` sources that allow exactly the page's inline scripts, byte for byte."""
    digests = (hashlib.sha256(script).digest() for script in _INLINE_SCRIPT.findall(html))
    return " ".join(f"'sha256-{base64.b64encode(digest).decode()}'" for digest in digests)


# Set unless the route chose its own (a page's CSP, a static file's caching).
DEFAULT_SECURITY_HEADERS = {"Content-Security-Policy": API_CSP, "Cache-Control": "no-store"}


def _raw(name: str, value: str) -> tuple[bytes, bytes]:
    return name.lower().encode("latin-1"), value.encode("latin-1")


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


class SecurityHeaders:
    """The security headers every HTTP response gets, whoever made it.

    A route may set its own `Content-Security-Policy` (pages) or `Cache-Control` (static files);
    the other headers are fixed. What is added after a response's own headers is one of a few
    lists made once (which defaults the route set, whether Vary is added).
    """

    def __init__(self, *, strict_transport_security: bool) -> None:
        fixed = fixed_security_headers(strict_transport_security=strict_transport_security)
        self.fixed = [_raw(name, value) for name, value in fixed.items()]
        self.defaults = [_raw(name, value) for name, value in DEFAULT_SECURITY_HEADERS.items()]
        # Per header name, what one lookup tells: dropped (0), or the bit of a default it sets.
        self._roles = dict.fromkeys([*(name for name, _ in self.fixed), b"x-powered-by"], 0)
        self._roles |= {name: 1 << bit for bit, (name, _) in enumerate(self.defaults)}
        self._vary_bit = 1 << len(self.defaults)
        self.added: dict[int, list[tuple[bytes, bytes]]] = {}
        for key in range(self._vary_bit << 1):
            missing = [header for bit, header in enumerate(self.defaults) if not key >> bit & 1]
            vary = [(b"vary", b"Origin")] if key & self._vary_bit else []
            self.added[key] = [*self.fixed, *missing, *vary]

    def kept_and_added(
        self,
        headers: Iterable[tuple[bytes, bytes]],
        replaced: frozenset[bytes] = frozenset(),
        vary_origin: bool = False,
    ) -> tuple[list[tuple[bytes, bytes]], int]:
        """In one pass, the response's own headers to keep, fixed ones (and `replaced`) dropped,
        Origin added to its Vary with `vary_origin` (the CORS answer differs by Origin, allowed
        or not, so caches must key on it); and the key in `added` of what goes after them."""
        kept: list[tuple[bytes, bytes]] = []
        key = 0
        roles = self._roles
        for name, value in headers:
            lower = name.lower()
            role = roles.get(lower)
            if role == 0 or lower in replaced:
                continue
            if role is not None:
                key |= role
            elif lower == b"vary" and vary_origin:
                value, vary_origin = value + b", Origin", False
            kept.append((name, value))
        return kept, (key | self._vary_bit) if vary_origin else key


class CorsPolicy:
    """CORS for the origins in `ALLOWED_ORIGINS`: an exact echo, never credentials.

    Starlette's CORSMiddleware refuses a preflight in text/plain; ours is a problem like any error.
    """

    def __init__(self, allowed_origins: Iterable[str]) -> None:
        # Settings hold origins as browsers send them (config.serialized_origin): compared as is.
        origins = set(allowed_origins)
        self.any_origin = "*" in origins
        self.allowed_origins = frozenset(origins - {"*"})

    def preflight(self, scope: Scope, origin: str | None) -> Response | None:
        """The answer to a preflight (`OPTIONS` with `Access-Control-Request-Method`), or None."""
        if scope["method"] != "OPTIONS" or not origin:
            return None
        request_headers = Headers(scope=scope)
        if "access-control-request-method" not in request_headers:
            return None
        return self._preflight(origin, request_headers)

    def granted(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        """The CORS headers for an actual request from this origin (none when refused)."""
        allowed = self._allow_origin(origin)
        return [(b"access-control-allow-origin", allowed.encode()), EXPOSED] if allowed else []

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
