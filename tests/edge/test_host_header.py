"""No answer carries a URL built from the client's `Host` (or `X-Forwarded-Host`): a path with a
trailing slash is a 404 problem, never a redirect to whatever host the client named."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.routing import APIRoute

from tests.edge.test_hostile_input import api_routes
from tests.edge.test_slow_clients import ANSWER_WAIT_SECONDS, address
from tests.streams import LiveShop

pytestmark = pytest.mark.only_backend("sqlite")

EVIL = "evil.example"
HOSTS = [EVIL, f"{EVIL}:8443", "[::1]:8000", "[2001:db8::1]", ""]
FORM = "username=a%40example.com&password=correct-horse-battery"


async def raw_exchange(
    shop: LiveShop, head: str, body: str = ""
) -> tuple[int, dict[str, str], str]:
    """One request written byte for byte (an empty Host, say), and its status, headers, body."""
    reader, writer = await asyncio.open_connection(*address(shop))
    writer.write((head + "\r\n" + body).encode())
    try:
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_WAIT_SECONDS)
        lines = raw.decode("latin-1").removesuffix("\r\n\r\n").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(headers.get("content-length", "0"))
        content = await asyncio.wait_for(reader.readexactly(length), ANSWER_WAIT_SECONDS)
    finally:
        writer.close()
    return int(lines[0].split()[1]), headers, content.decode()


@pytest.mark.parametrize("host", HOSTS)
async def test_a_trailing_slash_is_not_redirected_to_the_clients_host(
    live_shop: LiveShop, host: str
) -> None:
    head = f"GET /api/v1/products/ HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-Host: {EVIL}\r\n"
    status, headers, body = await raw_exchange(live_shop, head)
    assert (status, json.loads(body)["code"]) == (404, "not_found")
    assert "location" not in headers
    assert EVIL not in str(headers)


@pytest.mark.parametrize("host", HOSTS)
async def test_credentials_posted_to_a_trailing_slash_are_not_sent_elsewhere(
    live_shop: LiveShop, host: str
) -> None:
    head = (
        f"POST /api/v1/auth/token/ HTTP/1.1\r\nHost: {host}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(FORM)}\r\n"
    )
    status, headers, body = await raw_exchange(live_shop, head, FORM)
    assert (status, json.loads(body)["code"]) == (404, "not_found")
    assert "location" not in headers


async def test_no_route_answers_with_a_location(live_shop: LiveShop) -> None:
    """Inventory: each route's path, with and without a trailing slash, asked from an evil Host."""
    paths = {
        route.path.replace("{", "").replace("}", "").replace(":uuid", "")
        for route in api_routes(live_shop.app.routes)
        if isinstance(route, APIRoute)
    }
    assert len(paths) > 10
    for path in sorted(paths):
        for variant in (path, path.rstrip("/") + "/"):
            for method in ("GET", "POST"):
                head = f"{method} {variant} HTTP/1.1\r\nHost: {EVIL}\r\nContent-Length: 0\r\n"
                status, headers, _ = await raw_exchange(live_shop, head)
                assert "location" not in headers, (method, variant, status)
                assert not 300 <= status < 400, (method, variant, status)
