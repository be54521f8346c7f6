"""Structured logs, the request id, one access line per request (written by the edge)."""

from __future__ import annotations

import asyncio
import atexit
import functools
import itertools
import json
import logging
import os
import re
import secrets
import sys
import time
from contextvars import ContextVar, Token
from json.encoder import encode_basestring_ascii
from typing import IO, Any

import structlog
import structlog.tracebacks
from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from order_api.platform.telemetry.metrics import record_requests

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_HEADER_RAW = REQUEST_ID_HEADER.encode()
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
REDACTED = "[redacted]"
TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s\"']+")

JOBS = Counter("order_api_jobs", "Outbox deliveries by kind and outcome.", ["kind", "outcome"])
OUTBOX_RELAYED = Counter("order_api_outbox_relayed", "Outbox rows handed to the job queue.")
PASSWORD_CHECKS = Counter(
    "order_api_password_checks",
    "Argon2 verifications: against an account's hash, or the dummy hash for unknown e-mails.",
    ["against"],
)

WEBSOCKETS_OPEN = Gauge(
    "order_api_websockets_open",
    "Order stream sockets open now, by stream (one customer, or every order).",
    ["stream"],
    multiprocess_mode="livesum",
)
WEBSOCKET_MESSAGES = Counter(
    "order_api_websocket_messages_sent", "Frames sent on order stream sockets.", ["kind"]
)
WEBSOCKET_CLOSES = Counter(
    "order_api_websocket_closes",
    "Order stream sockets closed by the server, by close code.",
    ["code"],
)
STREAM_MESSAGES_DROPPED = Counter(
    "order_api_stream_messages_dropped",
    "Pub-sub messages on the orders channel that were not events.",
)
PUBSUB_RECONNECTS = Counter(
    "order_api_pubsub_reconnects",
    "Pub-sub subscriptions re-established after the transport was lost.",
)
ORDER_EVENT_DELAY = Histogram(
    "order_api_order_event_delay_seconds",
    "Age of an order event (now minus its `at`) when a process dispatches it to its sockets.",
    # Up to a minute: a Redis outage delays events by as long as it lasts.
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

# The scope key an answer made before routing names its route template under: the router
# puts the route it matched in `scope["route"]`, and nothing else should write that key.
ROUTE_TEMPLATE = "order_api.route_template"

NO_REQUEST_ID = "-"
_request_id: ContextVar[str] = ContextVar("request_id", default=NO_REQUEST_ID)
ACCESS_LOGGER_NAME = "order_api.access"
access_logger = structlog.get_logger(ACCESS_LOGGER_NAME)
_access_stdlib_logger = logging.getLogger(ACCESS_LOGGER_NAME)
# Set when logs are JSON: the handler whose stream the access lines are written to directly.
_json_access_handler: logging.Handler | None = None


def current_request_id() -> str:
    return _request_id.get()


def _add_request_id(_: object, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the request's id on every line logged while serving it. A ContextVar
    of our own, not structlog's bind/clear: those cost ~12 µs a request."""
    request_id = _request_id.get()
    if request_id != NO_REQUEST_ID:
        event_dict.setdefault("request_id", request_id)
    return event_dict


class _OurHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler configure_logging owns, so a second call replaces it and nothing else."""


def configure_logging(level: str, log_format: str, stream: IO[str] | None = None) -> None:
    _ended_requests.write()  # lines queued for the old stream go there
    shared: list[Any] = [
        _add_request_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if log_format == "json":
        # Frame locals can hold tokens and passwords: tracebacks carry code locations only.
        without_locals = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        final: list[Any] = [
            structlog.processors.ExceptionRenderer(without_locals),
            structlog.processors.JSONRenderer(),
        ]
    else:
        # Plain tracebacks: rich's pretty ones print local variables, which can hold secrets.
        final = [structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = _OurHandler(stream or sys.stderr)
    handler.addFilter(_TokenFilter())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
        )
    )
    global _json_access_handler
    _json_access_handler = handler if log_format == "json" else None
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, _OurHandler)] + [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # Our access line replaces uvicorn's, which would log query strings (tokens) in clear text.
    logging.getLogger("uvicorn.access").disabled = True
    error_logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _UvicornWebSocketFilter) for f in error_logger.filters):
        error_logger.addFilter(_UvicornWebSocketFilter())
    receiver_logger = logging.getLogger("taskiq.receiver")
    if not any(isinstance(f, _TaskiqStopFilter) for f in receiver_logger.filters):
        receiver_logger.addFilter(_TaskiqStopFilter())


class _UvicornWebSocketFilter(logging.Filter):
    """Drops uvicorn's `"WebSocket /path?token=…" [accepted]` lines (our own line replaces them),
    and tells a client's invalid UTF-8 as the warning it is, not an error with a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith('%s - "WebSocket '):
            return False
        if record.msg == "Invalid UTF-8 sequence received from client.":
            record.levelno, record.levelname, record.exc_info = logging.WARNING, "WARNING", None
        return True


class _TaskiqStopFilter(logging.Filter):
    """Tells taskiq's "listening task was cancelled" as the info it is: the worker stops
    taskiq's receiver by cancelling it, on every SIGTERM."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and "task was cancelled" in str(record.msg):
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class _TokenFilter(logging.Filter):
    """Redacts `token=` values in any library's message (DEBUG logs echo request lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "token=" in (message := record.getMessage()):
            record.msg, record.args = TOKEN_IN_TEXT.sub(rf"\1{REDACTED}", message), None
        return True


class _RequestIds:
    """New request ids: this process's random 64-bit prefix and a counter, 32 hex characters
    like a UUID's, without a uuid4's system call per request. The prefix is drawn again in a
    forked child, so two processes never share one."""

    def __init__(self) -> None:
        self._draw()
        os.register_at_fork(after_in_child=self._draw)

    def _draw(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


_new_request_id = _RequestIds().next


def pick_request_id(scope: Scope) -> str:
    return request_id_from(
        [value for name, value in scope["headers"] if name == _REQUEST_ID_HEADER_RAW]
    )


def request_id_from(values: list[bytes]) -> str:
    """The client's id when it sent exactly one well-formed `X-Request-ID`, else a new one."""
    if len(values) == 1:
        candidate = values[0].decode("latin-1")
        if REQUEST_ID_PATTERN.fullmatch(candidate):
            return str(candidate)
    return _new_request_id()


def redact_query(query_string: bytes) -> str:
    """Keep which parameters came, never their values: tokens travel in query strings."""
    if not query_string:
        return ""
    names = [part.split(b"=", 1)[0].decode("latin-1") for part in query_string.split(b"&") if part]
    return "&".join(f"{name}={REDACTED}" for name in names)


def route_template(scope: Scope) -> str | None:
    """The template of the route that answered (`/orders/{order_id}`, as in the schema: the
    route's `path_format` drops convertors), or None when no route matched."""
    template: str | None = scope.get(ROUTE_TEMPLATE)
    if template is None:
        template = getattr(scope.get("route"), "path_format", None)
    return template


def begin_request(request_id: str) -> Token[str]:
    """The request's id, for error bodies and every log line until `end_request`."""
    return _request_id.set(request_id)


def end_request(scope: Scope, token: Token[str], status: int, duration: float) -> None:
    """The request's access line and metrics, queued for the end of this loop tick (the one
    place that times requests)."""
    _ended_requests.add(scope, _request_id.get(), status, duration)
    _request_id.reset(token)


# How long an ended request's access line and metrics may wait: nginx's buffered `access_log`
# at a tenth of a second, so lines stay near real time and a write carries a whole batch.
WRITE_EVERY_SECONDS = 0.1


class _EndedRequests:
    """Requests ended lately, logged and counted together WRITE_EVERY_SECONDS after the first:
    one write and one pass for all, not a write system call and ~36,000 instructions a
    request (decisions 103 and 105). A scrape, a reconfiguration of the logs, the end of
    lifespan and the end of the process write them first."""

    def __init__(self) -> None:
        self.pending: list[tuple[Scope, str, int, float, float]] = []
        self._scheduled_on: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        atexit.register(self.write)

    def add(self, scope: Scope, request_id: str, status: int, duration: float) -> None:
        self.pending.append((scope, request_id, status, duration, time.time()))
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.write()
            return
        # Another loop (a test's earlier one) may have closed with its write never run.
        if self._scheduled_on is not loop:
            self._scheduled_on = loop
            self._timer = loop.call_later(WRITE_EVERY_SECONDS, self.write)

    def write(self) -> None:
        # Written early (a scrape): the next line waits its own WRITE_EVERY_SECONDS.
        if self._timer is not None and self._scheduled_on and not self._scheduled_on.is_closed():
            self._timer.cancel()
        pending, self.pending, self._scheduled_on, self._timer = self.pending, [], None, None
        if not pending:
            return
        handler = _json_access_handler
        as_json = handler is not None and _access_stdlib_logger.isEnabledFor(logging.INFO)
        lines, counted = [], []
        for scope, request_id, status, duration, ended_at in pending:
            method = scope["method"]
            route = route_template(scope)
            if as_json:
                line = _request_line(scope, route, method, status, duration, request_id, ended_at)
                lines.append(line)
            elif handler is None:
                fields = {"method": method, "status": status, "request_id": request_id}
                _access_line("request", scope, duration, **fields)
            counted.append((method, route, status, duration))
        if lines and handler is not None:
            _write_json_access_line(handler, "\n".join(lines))
        record_requests(counted)


_ended_requests = _EndedRequests()
write_ended_requests = _ended_requests.write


def _request_line(
    scope: Scope,
    route: str | None,
    method: str,
    status: int,
    duration: float,
    request_id: str,
    ended_at: float,
) -> str:
    """A request's JSON access line, with the keys and order of `_access_line`'s, written as
    text: a dict and its encoding cost more per request. The request id is safe as
    it is (pick_request_id admits only `[A-Za-z0-9._-]`); the rest is encoded."""
    path = _json(scope["path"])
    query = _json(redact_query(scope["query_string"])) if scope.get("query_string") else '""'
    route_json, method_json = _json_names(route, method)
    return (
        f'{{"route":{route_json},"path":{path},"query":{query},'
        f'"duration_ms":{duration * 1000:.2f},"method":{method_json},"status":{status},'
        f'"event":"request","request_id":"{request_id}","level":"info",'
        f'"logger":"{ACCESS_LOGGER_NAME}","timestamp":"{_utc_timestamp(ended_at)}"}}'
    )


def _json(text: str) -> str:
    """As structlog's renderer (json.dumps) writes it: non-ASCII escaped, so no character of a
    client's path (U+2028 is one) can split the line for a reader."""
    return encode_basestring_ascii(text)


@functools.lru_cache(maxsize=256)
def _json_names(route: str | None, method: str) -> tuple[str, str]:
    """A route template and a method as JSON: few of them, so each pair is encoded once."""
    return json.dumps(route), json.dumps(method)


async def observe_websocket(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """One line per socket when it ends: how it closed and how long it lived, no token."""
    token = _request_id.set(pick_request_id(scope))
    accepted, close_code = False, None
    started = time.perf_counter()

    async def send_noting_close(message: Message) -> None:
        nonlocal accepted, close_code
        if message["type"] == "websocket.accept":
            accepted = True
        elif message["type"] == "websocket.close":
            close_code = message.get("code", 1000)
        await send(message)

    try:
        await app(scope, receive, send_noting_close)
    finally:
        duration = time.perf_counter() - started
        _access_line("websocket", scope, duration, accepted=accepted, close_code=close_code)
        _request_id.reset(token)


def _access_line(event: str, scope: Scope, duration: float, **outcome: object) -> str | None:
    """Log the line; hand back the route template it named (None when no route matched)."""
    route = route_template(scope)
    fields = {
        "route": route,
        "path": scope["path"],
        "query": redact_query(scope.get("query_string", b"")),
        "duration_ms": round(duration * 1000, 2),
        **outcome,
    }
    if _json_access_handler is None:
        access_logger.info(event, **fields)
    elif _access_stdlib_logger.isEnabledFor(logging.INFO):
        fields["event"] = event
        fields["request_id"] = _request_id.get()
        fields["level"] = "info"
        fields["logger"] = ACCESS_LOGGER_NAME
        fields["timestamp"] = _utc_timestamp(time.time())
        _write_json_access_line(_json_access_handler, json.dumps(fields, default=str))
    return route


class _Second:
    """The last whole second formatted, and its text."""

    number = -1
    text = ""


def _utc_timestamp(now: float) -> str:
    """ISO 8601 in UTC with microseconds, as structlog's TimeStamper writes it; date and time of
    day formatted once a second (`datetime.isoformat` cost ~2 µs a line)."""
    second = int(now)
    if second != _Second.number:
        _Second.number, _Second.text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
    return f"{_Second.text}.{int((now - second) * 1_000_000):06d}Z"


def _write_json_access_line(handler: logging.Handler, line: str) -> None:
    """The JSON line structlog would write, written straight to the log stream: one per request,
    and the stdlib and structlog layers (two LogRecords, a formatter chain) cost ~25 µs of it."""
    handler.acquire()
    try:
        stream: IO[str] = handler.stream  # type: ignore[attr-defined]
        stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass  # a closed or broken log stream must not fail the request, as with logging's own
    finally:
        handler.release()
