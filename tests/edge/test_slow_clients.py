"""Slow-loris: a request head must arrive within REQUEST_HEAD_TIMEOUT_SECONDS, on a fresh or a
kept-alive connection; a late one is answered 408 and closed, counted, and nobody else waits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import pytest

from order_api.platform.http.headers import API_CSP
from tests.operations.test_metrics import scrape, value
from tests.streams import LiveShop, LiveShopFactory
from tests.test_errors import assert_problem

HEAD_TIMEOUT_SECONDS = 1.0
# Longer than the deadline at one byte a second, so it can never finish in time.
SLOW_HEAD = b"GET /health/live HTTP/1.1\r\nHost: shop\r\nX-Slow: " + b"a" * 120 + b"\r\n\r\n"
PROMPT_REQUEST = b"GET /health/live HTTP/1.1\r\nHost: shop\r\n\r\n"
TIMEOUTS = "order_api_http_request_head_timeouts_total"
ANSWER_WAIT_SECONDS = 15.0  # a bound for an answer to arrive, not a speed assertion


@pytest.fixture
async def shop_with_deadline(make_live_shop: LiveShopFactory) -> LiveShop:
    return await make_live_shop(request_head_timeout_seconds=HEAD_TIMEOUT_SECONDS)


def address(shop: LiveShop) -> tuple[str, int]:
    host, port = str(shop.client.base_url.netloc.decode()).split(":")
    return host, int(port)


def parse_response(raw: bytes) -> httpx2.Response:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = [(name, value) for name, _, value in (line.partition(": ") for line in header_lines)]
    return httpx2.Response(int(status_line.split(" ")[1]), headers=headers, content=body)


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes the connection."""
    return await asyncio.wait_for(reader.read(), ANSWER_WAIT_SECONDS)


async def trickle(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> tuple[int, bytes]:
    """Send one byte a second until the server answers; the bytes sent and its whole answer."""
    for sent in range(1, len(data) + 1):
        writer.write(data[sent - 1 : sent])
        await writer.drain()
        try:
            first = await asyncio.wait_for(reader.read(65536), 1.0)
        except TimeoutError:
            continue
        return sent, first + await read_to_end(reader)
    raise AssertionError("the server never answered a head that never completed")


async def read_one_response(reader: asyncio.StreamReader) -> httpx2.Response:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_WAIT_SECONDS)
    length = int(parse_response(head).headers["content-length"])
    body = await asyncio.wait_for(reader.readexactly(length), ANSWER_WAIT_SECONDS)
    return parse_response(head + body)


def assert_request_timeout(raw: bytes) -> None:
    response = parse_response(raw)
    assert_problem(response, 408, "request_timeout")
    assert response.headers["connection"] == "close"
    # Written by the protocol, past every middleware, yet with the same security headers.
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["content-security-policy"] == API_CSP
    assert response.headers["cache-control"] == "no-store"


async def test_a_head_trickling_in_gets_408_and_a_close_while_others_are_served(
    shop_with_deadline: LiveShop,
) -> None:
    shop = shop_with_deadline
    before = value(await scrape(shop.client), TIMEOUTS)
    reader, writer = await asyncio.open_connection(*address(shop))
    try:
        trickling = asyncio.create_task(trickle(reader, writer, SLOW_HEAD))
        # Another client on another connection meanwhile: served as if nothing were going on.
        for _ in range(3):
            assert (await shop.client.get("/health/live")).status_code == 200
        sent, answer = await trickling
    finally:
        writer.close()
    assert sent < len(SLOW_HEAD)
    assert_request_timeout(answer)  # read to the end: the server closed the connection
    assert value(await scrape(shop.client), TIMEOUTS) == before + 1


@asynccontextmanager
async def kept_alive(
    shop: LiveShop,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A connection that has had one request answered and is kept alive for the next."""
    reader, writer = await asyncio.open_connection(*address(shop))
    try:
        writer.write(PROMPT_REQUEST)
        assert (await read_one_response(reader)).status_code == 200
        yield reader, writer
    finally:
        writer.close()


async def test_a_kept_alive_connection_trickling_its_next_head_gets_408(
    shop_with_deadline: LiveShop,
) -> None:
    shop = shop_with_deadline
    before = value(await scrape(shop.client), TIMEOUTS)
    async with kept_alive(shop) as (reader, writer):
        # uvicorn's idle timer would be cancelled by the first byte; the head deadline is not.
        sent, answer = await trickle(reader, writer, SLOW_HEAD)
    assert sent < len(SLOW_HEAD)
    assert_request_timeout(answer)
    assert value(await scrape(shop.client), TIMEOUTS) == before + 1


async def test_the_deadline_covers_the_head_only_not_idle_time_nor_the_body(
    shop_with_deadline: LiveShop,
) -> None:
    shop = shop_with_deadline
    before = value(await scrape(shop.client), TIMEOUTS)
    async with kept_alive(shop) as (reader, writer):
        # Idle past the head deadline, inside uvicorn's keep-alive (5 s): the next request is fine.
        await asyncio.sleep(2 * HEAD_TIMEOUT_SECONDS)
        body = b"username=nobody%40example.com&password=wrong"
        writer.write(
            b"POST /api/v1/auth/token HTTP/1.1\r\nHost: shop\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        # A head on time and a body later: the body is not the head deadline's business.
        await asyncio.sleep(2 * HEAD_TIMEOUT_SECONDS)
        writer.write(body)
        assert_problem(await read_one_response(reader), 401, "invalid_credentials")
    assert value(await scrape(shop.client), TIMEOUTS) == before
