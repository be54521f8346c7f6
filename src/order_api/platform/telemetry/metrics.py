"""Prometheus metrics: the request and pool metrics (GET /metrics serves them).

With `PROMETHEUS_MULTIPROC_DIR` set, every process writes its samples to files there and a scrape
adds them up (prometheus-client multiprocess mode); without it a scrape is this process's own.
"""

from __future__ import annotations

import os
import sys
import weakref
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram, multiprocess
from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE = "unmatched"
OTHER_METHOD = "other"
# Any token is a method to HTTP: a label per unknown one would let clients grow the series.
KNOWN_METHODS = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT"})
# From a cached read (a few ms) to the request budget; Argon2 logins sit near 50-100 ms.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def refuse_a_missing_multiproc_directory() -> None:
    """prometheus-client opens its files in the directory as the first metric is made (on import):
    a mistyped path would end every command in a traceback; it is one line and exit code 2."""
    directory = os.environ.get(MULTIPROC_DIR_VARIABLE)
    if directory and not os.path.isdir(directory):
        sys.stderr.write(
            f"order-api: refusing to start: {MULTIPROC_DIR_VARIABLE}={directory} "
            "is not an existing directory\n"
        )
        raise SystemExit(2)


refuse_a_missing_multiproc_directory()

HTTP_REQUESTS = Counter(
    "order_api_http_requests",
    "HTTP requests by method, route template (never the raw path) and status.",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "order_api_http_request_duration_seconds",
    "Time from the request's arrival to the end of its response, by route template.",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
# Labelled children by (method, route, status): prometheus-client's `labels()` costs ~2 µs a call.
_request_series: dict[tuple[str, str | None, int], tuple[Counter, Histogram]] = {}
DB_POOL_IN_USE = Gauge(
    "order_api_db_pool_connections_in_use",
    "Database connections checked out of the pool now (summed over live processes).",
    multiprocess_mode="livesum",
)


def record_requests(ended: Iterable[tuple[str, str | None, int, float]]) -> None:
    """Count HTTP requests, each as (method, route, status, duration in seconds): called with
    the requests ended since the last call, where their access lines are written; each series'
    counter is increased once for all of them."""
    durations_by_series: dict[tuple[str, str | None, int], list[float]] = {}
    for method, route, status, duration_seconds in ended:
        durations_by_series.setdefault((method, route, status), []).append(duration_seconds)
    for (method, route, status), durations in durations_by_series.items():
        requests, latencies = _series(method, route, status)
        requests.inc(len(durations))
        # One `observe` a request: prometheus-client has no batch call (~0.9 µs a request,
        # ~1.9 µs in multiprocess mode, measured).
        for duration_seconds in durations:
            latencies.observe(duration_seconds)


def _series(method: str, route: str | None, status: int) -> tuple[Counter, Histogram]:
    series = _request_series.get((method, route, status))
    if series is None:
        route_label = route or UNMATCHED_ROUTE
        method_label = method if method in KNOWN_METHODS else OTHER_METHOD
        series = (
            HTTP_REQUESTS.labels(method_label, route_label, str(status)),
            HTTP_REQUEST_DURATION.labels(route_label),
        )
        if method_label == method:  # any other method shares OTHER's series: keep the map bounded
            _request_series[method, route, status] = series
    return series


def mark_this_process_dead(pid: int | None = None) -> None:
    """Drop this (or a child's) live-gauge files, so a stopped process stops counting in sums."""
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]


class _PoolUsage:
    """Connections out per engine of this process, and their sum, kept in step in O(1)."""

    def __init__(self) -> None:
        self._by_engine: dict[int, int] = {}
        self._total = 0

    def record(self, engine_key: int, in_use: int) -> None:
        self._total += in_use - self._by_engine.get(engine_key, 0)
        self._by_engine[engine_key] = in_use
        DB_POOL_IN_USE.set(self._total)

    def forget(self, engine_key: int) -> None:
        self.record(engine_key, 0)
        del self._by_engine[engine_key]


_pool_usage = _PoolUsage()


def track_connection_pool(engine: AsyncEngine) -> None:
    """Keep DB_POOL_IN_USE current on every check-out and check-in of the engine's pool.

    Set on pool events rather than at scrape time: in multiprocess mode a scrape is answered by
    one process, and every other process's value must be current too.
    """
    sync_engine = engine.sync_engine
    engine_key = id(sync_engine)
    engine_ref = weakref.ref(sync_engine)

    def on_checkout(*_: object) -> None:
        _pool_usage.record(engine_key, _checked_out(engine_ref()))

    def on_checkin(*_: object) -> None:
        # The check-in event runs before the pool takes the connection back: it still counts.
        _pool_usage.record(engine_key, max(_checked_out(engine_ref()) - 1, 0))

    # Listeners on the engine follow its pool across dispose(), which replaces the pool.
    event.listen(sync_engine, "checkout", on_checkout)
    event.listen(sync_engine, "checkin", on_checkin)
    weakref.finalize(sync_engine, _pool_usage.forget, engine_key)


def _checked_out(engine: Engine | None) -> int:
    checked_out = getattr(engine.pool, "checkedout", None) if engine is not None else None
    return int(checked_out()) if callable(checked_out) else 0
