"""Order stream test kit: the app served by a real uvicorn in the test's loop, WebSocket clients.

Sockets need a real server: the close-before-accept rule, pings and back-pressure exist only there.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from order_api.platform.http import uvicorn_options
from tests.accounts import Shop
from tests.waiting import wait_until

WAIT_SECONDS = 15.0  # a generous bound for a frame to arrive, not a speed assertion
HEARTBEAT = {"type": "heartbeat"}


@dataclass
class LiveShop(Shop):
    """A Shop whose client speaks real HTTP to a real server; `ws_base` is its ws:// root."""

    ws_base: str
    server: uvicorn.Server

    def stream_url(self, token: str | None, customer_id: uuid.UUID | str | None = None) -> str:
        path = "/api/v1/orders/ws" + (f"/{customer_id}" if customer_id is not None else "")
        return self.ws_base + path + (f"?token={token}" if token is not None else "")

    async def scraped(self, name: str, **labels: str) -> float:
        """One sample as the server's GET /metrics serves it (0 when absent)."""
        response = await self.client.get("/metrics")
        assert response.status_code == 200, response.text
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
        return 0.0

    async def closes(self, code: int) -> float:
        """Sockets the server closed with `code`, as /metrics counts them."""
        return await self.scraped("order_api_websocket_closes_total", code=str(code))


LiveShopFactory = Callable[..., Awaitable[LiveShop]]


@asynccontextmanager
async def served(
    app: FastAPI, send_buffer_bytes: int | None = None
) -> AsyncIterator[tuple[str, uvicorn.Server]]:
    """Serve an app whose lifespan already runs, with the options `order-api serve` uses.

    `send_buffer_bytes` fixes the kernel send buffer of every connection (a slow network).
    """
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer_bytes is not None:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
    listener.bind(("127.0.0.1", 0))
    host, port = listener.getsockname()
    options = uvicorn_options(app.state.settings)
    config = uvicorn.Config(app, lifespan="off", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    await wait_until(lambda: server.started or task.done(), "uvicorn to start")
    try:
        yield f"{host}:{port}", server
    finally:
        server.should_exit = True
        await task
        listener.close()


@asynccontextmanager
async def open_stream(
    url: str, open_timeout: float = WAIT_SECONDS, **options: Any
) -> AsyncIterator[ClientConnection]:
    async with connect(url, open_timeout=open_timeout, **options) as websocket:
        yield websocket


async def next_frame(websocket: ClientConnection) -> dict[str, Any]:
    frame = await asyncio.wait_for(websocket.recv(), WAIT_SECONDS)
    decoded: dict[str, Any] = json.loads(frame)
    return decoded


async def next_event(websocket: ClientConnection) -> dict[str, Any]:
    """The next order event, skipping heartbeats."""
    while (frame := await next_frame(websocket)) == HEARTBEAT:
        pass
    return frame


async def frames_until_closed(
    websocket: ClientConnection, within: float = 4 * WAIT_SECONDS
) -> tuple[list[str], int | None]:
    """Every data frame the server sends until it closes, and the close code it closed with.

    Bounded as a whole: heartbeats must not keep a socket that should have closed waiting.
    """
    frames: list[str] = []
    try:
        async with asyncio.timeout(within):
            while True:
                frames.append(str(await websocket.recv()))
    except ConnectionClosed as closed:
        return frames, closed.rcvd.code if closed.rcvd else None


async def refusal_code(url: str, **options: Any) -> int | None:
    """The close code a refused socket gets; it must not have carried a single data frame."""
    async with open_stream(url, **options) as websocket:
        frames, code = await frames_until_closed(websocket)
    assert frames == [], f"a refused socket carried data: {frames}"
    return code


def event_for(customer_id: uuid.UUID) -> bytes:
    """An order event as the outbox publishes it, for a made-up order of that customer."""
    event = {
        "order_id": str(uuid.uuid4()),
        "customer_id": str(customer_id),
        "status": "PAID",
        "previous_status": "PENDING",
        "at": datetime.now(UTC).isoformat(),
    }
    return json.dumps(event).encode()


def small_receive_buffer_socket(address: str) -> socket.socket:
    """A connected TCP socket with a tiny receive window, for a client that never reads."""
    host, port = address.split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    return sock
