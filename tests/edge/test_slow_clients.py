"""Slow clients over a real server: a kept-alive connection may idle between requests and send a
body late; neither is cut off. (A request head that never completes is the proxy's to end:
uvicorn has no deadline for it, docs/decisions.md "The server".)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2

from tests.streams import LiveShop, LiveShopFactory
from tests.test_errors import assert_problem

PROMPT_REQUEST = b"GET /health/live HTTP/1.1\r\nHost: shop\r\n\r\n"
ANSWER_WAIT_SECONDS = 15.0  # a bound for an answer to arrive, not a speed assertion
# Under uvicorn's keep-alive timeout (5 s): the connection is still open when the client goes on.
PAUSE_SECONDS = 2.0


def address(shop: LiveShop) -> tuple[str, int]:
    host, port = str(shop.client.base_url.netloc.decode()).split(":")
    return host, int(port)


def parse_response(raw: bytes) -> httpx2.Response:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = [(name, value) for name, _, value in (line.partition(": ") for line in header_lines)]
    return httpx2.Response(int(status_line.split(" ")[1]), headers=headers, content=body)


async def read_one_response(reader: asyncio.StreamReader) -> httpx2.Response:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_WAIT_SECONDS)
    length = int(parse_response(head).headers["content-length"])
    body = await asyncio.wait_for(reader.readexactly(length), ANSWER_WAIT_SECONDS)
    return parse_response(head + body)


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


async def test_idle_time_and_a_late_body_are_not_cut_off(make_live_shop: LiveShopFactory) -> None:
    shop = await make_live_shop()
    async with kept_alive(shop) as (reader, writer):
        await asyncio.sleep(PAUSE_SECONDS)
        body = b"username=nobody%40example.com&password=wrong"
        writer.write(
            b"POST /api/v1/auth/token HTTP/1.1\r\nHost: shop\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        # A head on time and a body later: the request is answered, not timed out.
        await asyncio.sleep(PAUSE_SECONDS)
        writer.write(body)
        assert_problem(await read_one_response(reader), 401, "invalid_credentials")
