"""Dead pooled PostgreSQL connections are replaced before a request gets one (FLT-03).

SQLAlchemy's `pool_pre_ping` costs three round trips on every checkout with asyncpg (BEGIN, the
ping, ROLLBACK): more than the query it guards. Instead: a connection whose server end closed
(restart, `pg_terminate_backend`) is seen closed by the event loop for free, and only one idle
long enough for a silent drop (a firewall, a NAT timeout) costs a one-round-trip ping.
"""

from __future__ import annotations

import time

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError, InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.util import await_

# Busy connections come back within milliseconds; one idle this long is pinged before use.
PING_AFTER_IDLE_SECONDS = 5.0
_RETURNED_AT = "order_api.returned_at"


def replace_stale_connections(engine: AsyncEngine, ping_timeout_seconds: float) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "checkin")
    def note_return(_: DBAPIConnection | None, record: ConnectionPoolEntry) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(sync_engine, "connect")
    def note_fresh(_: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        record.info[_RETURNED_AT] = time.monotonic()  # just opened: no ping needed yet

    @event.listens_for(sync_engine, "checkout")
    def check(_: DBAPIConnection, record: ConnectionPoolEntry, __: object) -> None:
        # Raising DisconnectionError makes the pool discard this one and check out another.
        driver: asyncpg.Connection = record.driver_connection  # type: ignore[assignment]
        if driver.is_closed():
            # A restart closes every connection: replace them all, not one per request.
            raise InvalidatePoolError("the server closed this connection")
        idle = time.monotonic() - record.info.get(_RETURNED_AT, 0.0)
        if idle < PING_AFTER_IDLE_SECONDS:
            return
        try:
            await_(driver.fetchrow(";", timeout=ping_timeout_seconds))
        except Exception as error:  # any failure: this connection cannot be trusted with a request
            raise DisconnectionError(repr(error)) from error
