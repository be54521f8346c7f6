"""The telemetry door: structured logs and the request id, every metric, and GET /metrics. Other
packages import these names from here only."""

from order_api.platform.telemetry.endpoint import router
from order_api.platform.telemetry.logs import (
    JOBS,
    ORDER_EVENT_DELAY,
    OUTBOX_RELAYED,
    PASSWORD_CHECKS,
    PUBSUB_RECONNECTS,
    REQUEST_ID_HEADER,
    ROUTE_TEMPLATE,
    STREAM_MESSAGES_DROPPED,
    WEBSOCKET_CLOSES,
    WEBSOCKET_MESSAGES,
    WEBSOCKETS_OPEN,
    begin_request,
    configure_logging,
    current_request_id,
    end_request,
    observe_websocket,
    request_id_from,
    route_template,
    write_ended_requests,
)
from order_api.platform.telemetry.metrics import (
    MULTIPROC_DIR_VARIABLE,
    mark_this_process_dead,
    track_connection_pool,
)

__all__ = [
    "JOBS",
    "MULTIPROC_DIR_VARIABLE",
    "ORDER_EVENT_DELAY",
    "OUTBOX_RELAYED",
    "PASSWORD_CHECKS",
    "PUBSUB_RECONNECTS",
    "REQUEST_ID_HEADER",
    "ROUTE_TEMPLATE",
    "STREAM_MESSAGES_DROPPED",
    "WEBSOCKETS_OPEN",
    "WEBSOCKET_CLOSES",
    "WEBSOCKET_MESSAGES",
    "begin_request",
    "configure_logging",
    "current_request_id",
    "end_request",
    "mark_this_process_dead",
    "observe_websocket",
    "request_id_from",
    "route_template",
    "router",
    "track_connection_pool",
    "write_ended_requests",
]
