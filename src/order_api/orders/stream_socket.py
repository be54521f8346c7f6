"""The socket side of the order stream: admit, accept, then pump frames until one side ends.

Admission, cheapest first: the handshake rate per address (4429), the token (4401), the origin
and the right to watch (4403), then the process's socket caps per user and per address (4429).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import Depends
from sqlalchemy.exc import SQLAlchemyError
from starlette.websockets import WebSocket, WebSocketDisconnect

from order_api.config import Settings, SettingsDep
from order_api.orders.stream import (
    CLIENT_GONE,
    NOT_READING,
    TOO_MANY,
    Closing,
    OrderStream,
    OrderStreamDep,
    SocketCapReached,
    Watcher,
)
from order_api.orders.stream_access import Handshake, StreamRefused, admit_viewer
from order_api.platform.db import DatabaseReader, ReaderDep
from order_api.platform.errors import TooManyRequests
from order_api.platform.limits import RateLimits, RateLimitsDep, address_key, client_address
from order_api.platform.security import Tokens, TokensDep
from order_api.platform.telemetry import WEBSOCKET_CLOSES, WEBSOCKET_MESSAGES

logger = structlog.get_logger(__name__)

HEARTBEAT_FRAME = '{"type":"heartbeat"}'
NO_MESSAGES_TAKEN = Closing(1003, "this stream only sends; it takes no messages")
UNAVAILABLE = Closing(1013, "the service cannot check the token now; try again later")
# Errors a send or receive raises once the client has gone (uvicorn's are OSError subclasses).
DISCONNECTED = (WebSocketDisconnect, OSError, RuntimeError)


@dataclass(frozen=True)
class StreamServices:
    """What a socket of the order stream uses: the hub, the limits, what checks its token."""

    hub: OrderStream
    rate_limits: RateLimits
    tokens: Tokens
    reader: DatabaseReader
    settings: Settings


async def stream_services(
    hub: OrderStreamDep,
    rate_limits: RateLimitsDep,
    tokens: TokensDep,
    reader: ReaderDep,
    settings: SettingsDep,
) -> StreamServices:
    return StreamServices(hub, rate_limits, tokens, reader, settings)


StreamServicesDep = Annotated[StreamServices, Depends(stream_services)]


async def serve_order_stream(
    websocket: WebSocket, services: StreamServices, token: str | None, customer: str | None
) -> None:
    """One socket's whole life. `customer` None is the every-order stream (staff)."""
    hub, settings = services.hub, services.settings
    address = client_address(websocket.scope, settings.trusted_proxies)
    try:
        await services.rate_limits.check_websocket(address)
    except TooManyRequests as refusal:
        await _refuse(websocket, Closing(TOO_MANY, refusal.detail))
        return
    handshake = Handshake(
        origin=websocket.headers.get("origin"),
        host=websocket.headers.get("host"),
        allowed_origins=settings.allowed_origins,
    )
    try:
        viewer = await admit_viewer(services.reader, services.tokens, handshake, token, customer)
    except StreamRefused as refusal:
        await _refuse(websocket, refusal.closing)
        return
    except (SQLAlchemyError, OSError) as error:
        logger.warning("stream_admission_failed", error=repr(error))
        await _refuse(websocket, UNAVAILABLE)
        return
    with contextlib.ExitStack() as watching:
        try:
            # Keyed like the rate limits: an IPv6 client is its /64, so it cannot rotate addresses.
            watcher = watching.enter_context(hub.watch(viewer, address_key(address)))
        except SocketCapReached as refusal:
            await _refuse(websocket, refusal.closing)
            return
        await websocket.accept()
        await _pump(websocket, watcher, hub.heartbeat_seconds)


async def _refuse(websocket: WebSocket, closing: Closing) -> None:
    # Closing before accept would be an HTTP 403; clients are promised a close code instead.
    WEBSOCKET_CLOSES.labels(str(closing.code)).inc()
    with contextlib.suppress(*DISCONNECTED):
        await websocket.accept()
        await websocket.close(closing.code or 1000, closing.reason)


async def _pump(websocket: WebSocket, watcher: Watcher, heartbeat_seconds: float) -> None:
    tasks = [
        asyncio.create_task(_send_frames(websocket, watcher, heartbeat_seconds)),
        asyncio.create_task(_refuse_client_frames(websocket, watcher)),
        asyncio.create_task(watcher.ended.wait()),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Cancelling the sender also frees it from a send blocked by a client that never reads.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:  # a disconnect is handled inside the tasks: anything else is a bug to show
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error
    closing = watcher.closing or CLIENT_GONE
    if closing.code is not None:
        with contextlib.suppress(*DISCONNECTED, TimeoutError):
            async with asyncio.timeout(heartbeat_seconds):
                await websocket.close(closing.code, closing.reason)


async def _send_frames(websocket: WebSocket, watcher: Watcher, heartbeat_seconds: float) -> None:
    try:
        while True:
            try:
                async with asyncio.timeout(heartbeat_seconds):
                    frame, kind = await watcher.frames.get(), "event"
            except TimeoutError:
                frame, kind = HEARTBEAT_FRAME, "heartbeat"
            try:
                async with asyncio.timeout(heartbeat_seconds):
                    await websocket.send_text(frame)
            except TimeoutError:
                # The server's buffer stayed full a whole beat: the client is not reading.
                watcher.end(NOT_READING)
                return
            WEBSOCKET_MESSAGES.labels(kind).inc()
    except DISCONNECTED:
        watcher.end(CLIENT_GONE)


async def _refuse_client_frames(websocket: WebSocket, watcher: Watcher) -> None:
    try:
        message = await websocket.receive()
    except DISCONNECTED:
        message = {"type": "websocket.disconnect"}
    # A peer that answered no ping is gone too: the server closed it (1011) and says only that.
    watcher.end(NO_MESSAGES_TAKEN if message["type"] != "websocket.disconnect" else CLIENT_GONE)
