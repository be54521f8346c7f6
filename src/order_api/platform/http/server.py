"""How every API process serves: uvicorn's options, an HTTP protocol with a deadline on request
heads, and a WebSocket protocol that lets go of peers that stop reading."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Counter
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from order_api.config import Settings
from order_api.platform.errors import PROBLEM_MEDIA_TYPE, problem_response
from order_api.platform.http.headers import (
    DEFAULT_SECURITY_HEADERS,
    HEADER_LINES,
    fixed_security_headers,
)

# Client frames are refused anyway; a bigger one is cut off (1009) before it is buffered whole.
WS_MAX_CLIENT_FRAME_BYTES = 4096
# Sent to sockets still open when the process stops: the client reconnects to another process.
WS_GOING_AWAY = 1001
WS_MISSED_PINGS = 1011  # what uvicorn's close frame says when a pong is overdue
REQUEST_TIMEOUT_CODE = "request_timeout"
# How long a timed-out connection still swallows the client's bytes after its 408 and FIN.
LINGER_SECONDS = 2.0

REQUEST_HEAD_TIMEOUTS = Counter(
    "order_api_http_request_head_timeouts",
    "Connections answered 408 and closed: a request head not complete within its deadline.",
)


def request_timeout_response(
    default_headers: list[tuple[bytes, bytes]], security_headers: dict[str, str]
) -> bytes:
    """The whole 408 answer, written by the protocol itself: no request reached the app."""
    request_id = uuid.uuid4().hex
    detail = "The request's headers did not arrive in time."
    extra = {"request_id": request_id}  # no request context: the id is made here
    body = bytes(problem_response(408, REQUEST_TIMEOUT_CODE, detail, extra=extra).body)
    headers = {
        **security_headers,
        "content-type": PROBLEM_MEDIA_TYPE,
        "content-length": str(len(body)),
        "connection": "close",
        "x-request-id": request_id,
    }
    defaults = b"".join(name + b": " + value + b"\r\n" for name, value in default_headers)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    return STATUS_LINE[408] + defaults + head.encode("ascii") + body


class HeadDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, except that a request head must be complete within
    `head_timeout_seconds` of the connection opening or of the request's first byte, and that
    it writes the header lines a response start carries under HEADER_LINES.

    uvicorn has no such deadline: a client trickling header bytes (slow-loris) holds a
    connection forever, and on a kept-alive connection any byte cancels the idle timer.
    uvicorn checks every header it writes with two regular expressions: for the seven
    security headers of every response that was ~40,000 instructions, a quarter of the edge's
    cost; their lines are constants, checked once (`SecurityHeaders`).
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        head_timeout_seconds: float,
        security_headers: dict[str, str],
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.head_timeout_seconds = head_timeout_seconds
        self.security_headers = security_headers
        self._head_deadline: asyncio.TimerHandle | None = None
        self._lingering = False
        self._head_with_lines: _HeadWithLines | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {HEADER_LINES: {}}
        self._arm_head_deadline()

    def on_headers_complete(self) -> None:
        self._cancel_head_deadline()
        earlier = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not earlier:  # not on an upgrade
            if self._head_with_lines is None:
                self._head_with_lines = _HeadWithLines(self.transport)
            send = _writing_header_lines(self.cycle, self._head_with_lines)
            self.cycle.send = send  # type: ignore[method-assign,assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        # A fresh connection's deadline runs from the connection, not from its first byte.
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(
                self.head_timeout_seconds, self._head_deadline_passed
            )

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_deadline_passed(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        REQUEST_HEAD_TIMEOUTS.inc()
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head behind a running response: the 408 cannot cut into that response,
            # so the connection ends once it is sent and the partial head is never served.
            self.cycle.keep_alive = False
            self.flow.pause_reading()
            return
        answer = request_timeout_response(self.server_state.default_headers, self.security_headers)
        self.transport.write(answer)
        self._close_lingering()

    def _close_lingering(self) -> None:
        """Send FIN after the 408, then discard what the client still sends, briefly: a socket
        closed with unread bytes answers with RST, which can destroy the 408 before it is read."""
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self._lingering = True
        self.transport.write_eof()
        self.flow.resume_reading()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # after the 408: read only so the kernel does not reset the connection
        super().data_received(data)


def _writing_header_lines(
    cycle: RequestResponseCycle, head: _HeadWithLines
) -> Callable[[Any], Awaitable[None]]:
    """The cycle's `send`, which also writes a start message's HEADER_LINES into its head,
    through the connection's `head` (one per connection, not one per response)."""
    send = cycle.send

    async def send_start(message: Any, lines: bytes) -> None:
        transport, head.lines = cycle.transport, lines
        cycle.transport = head
        try:
            await send(message)
        finally:
            cycle.transport = transport

    # Not a coroutine: a body message is handed on as uvicorn's own, with no frame of ours.
    def send_with_header_lines(message: Any) -> Awaitable[None]:
        lines = message.get(HEADER_LINES) if message["type"] == "http.response.start" else None
        return send_start(message, lines) if lines else send(message)

    return send_with_header_lines


class _HeadWithLines(asyncio.Transport):
    """The transport while uvicorn writes a response head, which it does in one write ending in
    the blank line: the lines go in just before that line."""

    def __init__(self, transport: asyncio.Transport) -> None:
        super().__init__()
        self._transport, self.lines = transport, b""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        head = bytes(data)
        if not head.endswith(b"\r\n\r\n"):
            raise RuntimeError("a response head must end in a blank line")
        self._transport.write(head[:-2] + self.lines + b"\r\n")


def head_deadline_protocol(
    head_timeout_seconds: float, security_headers: dict[str, str]
) -> Callable[..., HeadDeadlineProtocol]:
    """What uvicorn calls per connection, our deadline bound in: it hands protocols its own
    Config, which has no room for our settings. A partial, so `--workers N` can pickle it."""
    return functools.partial(
        HeadDeadlineProtocol,
        head_timeout_seconds=head_timeout_seconds,
        security_headers=security_headers,
    )


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's own protocol, except that a connection still open `close_timeout` after the app
    finished (or after a missed ping) is aborted, and a stopping process closes with 1001.

    uvicorn closes gracefully, flushing first, and a peer that never reads would hold that flush,
    its buffers and its descriptor forever."""

    async def run_asgi(self) -> None:
        await super().run_asgi()
        self._abort_later()

    def keepalive_timeout(self) -> None:
        # uvicorn tells the app only that the connection was lost: say why, so it is counted.
        self.queue.put_nowait(
            {"type": "websocket.disconnect", "code": WS_MISSED_PINGS, "reason": "no pong"}
        )
        super().keepalive_timeout()
        self._abort_later()

    def shutdown(self) -> None:
        """uvicorn's, with 1001 (going away) instead of 1012 (service restart): the process
        stops; 1012 stays our hub's code for a lost and regained pub-sub subscription."""
        if not self.handshake_complete or self.close_sent:
            super().shutdown()
            return
        self.stop_keepalive()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": WS_GOING_AWAY})
        self.conn.send_close(WS_GOING_AWAY)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.transport.close()

    def _abort_later(self) -> None:
        self.loop.call_later(self.close_timeout, self._abort_if_still_open)

    def _abort_if_still_open(self) -> None:
        if not self.disconnected:
            self.transport.abort()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How every API process serves: our logging, no version header, WebSocket pings per beat."""
    return {
        "log_config": None,
        "access_log": False,
        "server_header": False,
        # The client address is ours to resolve, from TRUSTED_PROXIES only (platform.limits);
        # uvicorn's own proxy handling would believe X-Forwarded-For from any loopback peer.
        "proxy_headers": False,
        "timeout_graceful_shutdown": settings.shutdown_timeout_seconds,
        "http": head_deadline_protocol(
            settings.request_head_timeout_seconds,
            {
                **fixed_security_headers(
                    strict_transport_security=settings.environment == "production"
                ),
                **DEFAULT_SECURITY_HEADERS,
            },
        ),
        "ws": WebSocketProtocol,
        # Protocol pings keep idle sockets alive through proxies, and a peer that answers none for
        # three beats is gone (1011, told to the app); a reader too slow for its events is closed
        # by the stream first, after one beat of full buffers (1013).
        "ws_ping_interval": settings.ws_heartbeat_seconds,
        "ws_ping_timeout": 2 * settings.ws_heartbeat_seconds,
        "ws_max_size": WS_MAX_CLIENT_FRAME_BYTES,
    }
