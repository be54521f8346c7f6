"""Who the client is (the socket peer, or what a trusted proxy says) and the per-address limit on
every request; the routes' own limits are checked by their services through `RateLimitsDep`."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import ip_address
from typing import Annotated

from fastapi import Depends, Request
from fastapi.requests import HTTPConnection
from prometheus_client import Counter
from pydantic import IPvAnyNetwork
from starlette.types import Scope

from order_api.config import Settings
from order_api.platform.limits.rules import RateLimits
from order_api.platform.networks import address_in

Networks = Sequence[IPvAnyNetwork]
# Probes and scrapes come from the load balancer's and Prometheus' addresses, often and on purpose.
UNLIMITED_PATHS = frozenset({"/health", "/health/live", "/health/ready", "/metrics"})
UNKNOWN_CLIENT = "unknown"

FORWARDED_IGNORED = Counter(
    "order_api_forwarded_headers_ignored",
    "Requests carrying X-Forwarded-For from a peer outside TRUSTED_PROXIES (the header is unused).",
)


def _forwarded_for(scope: Scope) -> list[str]:
    return [
        hop.strip()
        for name, value in scope["headers"]
        if name == b"x-forwarded-for"
        for hop in value.decode("latin-1").split(",")
    ]


def _hop_address(hop: str) -> str | None:
    """A forwarded hop as a plain address: some proxies add a port (`a.b.c.d:p`, `[v6]:p`)."""
    if hop.startswith("[") and "]" in hop:
        hop = hop[1 : hop.index("]")]
    elif hop.count(":") == 1:
        hop = hop.split(":", 1)[0]
    try:
        return str(ip_address(hop))
    except ValueError:
        return None


def client_address(scope: Scope, proxies: Networks) -> str:
    """The socket peer; behind trusted proxies, the right-most forwarded hop that is not one of
    them (hops further left were written by the client and prove nothing)."""
    return _resolve_client(scope, proxies)[0]


def _resolve_client(scope: Scope, proxies: Networks) -> tuple[str, bool]:
    """The client's address, and whether an X-Forwarded-For was ignored (an untrusted peer)."""
    peer = scope.get("client")
    address = peer[0] if peer else UNKNOWN_CLIENT
    trusted_peer = bool(proxies) and peer is not None and address_in(address, proxies)
    forwarded = _forwarded_for(scope)
    if not trusted_peer:
        return address, bool(forwarded)
    for hop in reversed(forwarded):
        hop_address = _hop_address(hop)
        if hop_address is None:
            break  # written by the client: the proxy to its right is the last address we know
        address = hop_address
        if not address_in(address, proxies):
            break
    return address, False


def limited_address(scope: Scope, trusted_proxies: Networks, forwarded: bool = True) -> str | None:
    """The address the general per-address limit (RATE_LIMIT_DEFAULT) counts an HTTP request
    against; None for probes and scrapes, which it exempts. `forwarded=False`: the caller saw
    no X-Forwarded-For, so the socket peer is the client, trusted proxy or not."""
    if scope["path"] in UNLIMITED_PATHS:
        return None
    if not forwarded:
        peer = scope.get("client")
        return str(peer[0]) if peer else UNKNOWN_CLIENT
    address, forwarded_ignored = _resolve_client(scope, trusted_proxies)
    if forwarded_ignored:
        FORWARDED_IGNORED.inc()
    return address


async def app_rate_limits(connection: HTTPConnection) -> RateLimits:
    limits: RateLimits = connection.app.state.rate_limits
    return limits


async def request_client_address(request: Request) -> str:
    settings: Settings = request.app.state.settings
    return client_address(request.scope, settings.trusted_proxies)


RateLimitsDep = Annotated[RateLimits, Depends(app_rate_limits)]
ClientAddressDep = Annotated[str, Depends(request_client_address)]
