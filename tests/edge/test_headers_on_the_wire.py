"""Over a real server, every security header goes out exactly once, in a well-formed head: the
same headers as in-process."""

from __future__ import annotations

import asyncio
import itertools

import httpx2
import pytest

from order_api.platform.http.headers import API_CSP, BOARD_CSP
from tests.edge.test_slow_clients import ANSWER_WAIT_SECONDS, address
from tests.streams import LiveShop, LiveShopFactory

pytestmark = pytest.mark.only_backend("sqlite")

# (method, path, expected status, expected CSP, expected Cache-Control)
CASES = [
    ("GET", "/health/live", 200, API_CSP, "no-store"),
    ("GET", "/api/v1/products", 200, API_CSP, "no-store"),
    ("GET", "/api/v1/nothing-here", 404, API_CSP, "no-store"),
    ("GET", "/board", 200, BOARD_CSP, "no-cache"),
    ("GET", "/board/board.js", 200, API_CSP, "no-cache"),
    ("HEAD", "/api/v1/products", 200, API_CSP, "no-store"),
]
# Differ from one answer to the next, whoever serves it.
VARYING = {"date", "x-request-id", "etag", "last-modified"}


async def raw_head(shop: LiveShop, method: str, path: str, origin: str | None) -> list[str]:
    """The response head's lines as the server wrote them, status line first."""
    reader, writer = await asyncio.open_connection(*address(shop))
    extra = f"Origin: {origin}\r\n" if origin else ""
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: shop\r\n{extra}\r\n".encode())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_WAIT_SECONDS)
    finally:
        writer.close()
    return head.decode("latin-1").removesuffix("\r\n\r\n").split("\r\n")


def raw_lines(response: httpx2.Response) -> list[str]:
    return [f"{name.decode()}: {value.decode()}" for name, value in response.headers.raw]


def named(lines: list[str]) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, separator, value = line.partition(": ")
        assert separator, line
        assert name == name.strip().lower(), line
        assert value == value.strip(), line
        headers.setdefault(name, []).append(value)
    return headers


async def test_each_security_header_once_in_a_well_formed_head_as_in_process(
    make_live_shop: LiveShopFactory,
) -> None:
    # One live server for every case: each costs seconds to start on this machine.
    shop = await make_live_shop(allowed_origins=["https://shop.example"])
    for (method, path, status, csp, cache_control), origin in itertools.product(
        CASES, (None, "https://shop.example")
    ):
        lines = await raw_head(shop, method, path, origin)
        assert lines[0].startswith(f"HTTP/1.1 {status}"), (method, path, lines[0])
        on_the_wire = named(lines)
        assert {name for name, values in on_the_wire.items() if len(values) > 1} == set()
        assert on_the_wire["content-security-policy"] == [csp]
        assert on_the_wire["cache-control"] == [cache_control]
        assert on_the_wire["x-frame-options"] == ["DENY"]
        assert on_the_wire["x-content-type-options"] == ["nosniff"]
        assert on_the_wire["referrer-policy"] == ["no-referrer"]
        assert on_the_wire["vary"][0].endswith("Origin")
        assert len(on_the_wire["x-request-id"][0]) == 32
        in_process = await in_process_headers(shop, method, path, origin)
        assert without_varying(on_the_wire) == without_varying(in_process), (method, path)


async def in_process_headers(
    shop: LiveShop, method: str, path: str, origin: str | None
) -> dict[str, list[str]]:
    """The same request over ASGI, with no server in between."""
    transport = httpx2.ASGITransport(app=shop.app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://shop") as client:
        headers = {"origin": origin} if origin else {}
        response = await client.request(method, path, headers=headers)
    return named(["status", *raw_lines(response)])


def without_varying(headers: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name: values for name, values in headers.items() if name not in VARYING}
