"""How every API process serves: uvicorn's options, and a WebSocket protocol that lets go of
peers that stop reading."""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from order_api.config import Settings

# Client frames are refused anyway; a bigger one is cut off (1009) before it is buffered whole.
WS_MAX_CLIENT_FRAME_BYTES = 4096


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's own protocol, except that a connection still open `close_timeout` after the app
    finished (or after a missed ping) is aborted. uvicorn closes gracefully, flushing first, and
    a peer that never reads would hold that flush, its buffers and its descriptor forever."""

    async def run_asgi(self) -> None:
        await super().run_asgi()
        self._abort_later()

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        self._abort_later()

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
        # The client address is ours to resolve, from TRUSTED_PROXIES only (order_api.throttling);
        # uvicorn's own proxy handling would believe X-Forwarded-For from any loopback peer.
        "proxy_headers": False,
        "timeout_graceful_shutdown": settings.shutdown_timeout_seconds,
        "ws": WebSocketProtocol,
        # Protocol pings keep idle sockets alive through proxies; a peer that misses one is dropped.
        "ws_ping_interval": settings.ws_heartbeat_seconds,
        "ws_ping_timeout": settings.ws_heartbeat_seconds,
        "ws_max_size": WS_MAX_CLIENT_FRAME_BYTES,
    }
