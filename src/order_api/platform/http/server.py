"""How every API process serves: uvicorn, through its public options only (decision 117)."""

from __future__ import annotations

from typing import Any

from order_api.config import Settings

# Client frames are refused anyway; a bigger one is cut off (1009) before it is buffered whole.
WS_MAX_CLIENT_FRAME_BYTES = 4096


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """`uvicorn.run`'s and `uvicorn.Config`'s keyword arguments besides the app and the address:
    our logging, no version header, WebSocket pings per beat."""
    return {
        "log_config": None,
        "access_log": False,
        "server_header": False,
        # The client address is ours to resolve, from TRUSTED_PROXIES only (platform.limits);
        # uvicorn's own proxy handling would believe X-Forwarded-For from any loopback peer.
        "proxy_headers": False,
        "timeout_graceful_shutdown": settings.shutdown_timeout_seconds,
        # Named, not "auto": the close codes and limits below are these protocols' behaviour.
        "http": "httptools",
        "ws": "websockets-sansio",
        # Protocol pings keep idle sockets alive through proxies, and a peer that answers none for
        # three beats is gone (1011); a reader too slow for its events is closed by the stream
        # first, after one beat of full buffers (1013).
        "ws_ping_interval": settings.ws_heartbeat_seconds,
        "ws_ping_timeout": 2 * settings.ws_heartbeat_seconds,
        "ws_max_size": WS_MAX_CLIENT_FRAME_BYTES,
    }
