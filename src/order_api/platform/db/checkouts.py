"""Every connection our code takes from the engine's pool: first come, first served, and alive.

SQLAlchemy's async queue pool lets a newcomer take a returned connection ahead of those already
waiting, who then wait again at the back: with 64 clients on 10 connections, p99 went to 1.2 s
with timeouts. So our code waits its turn here before it checks a connection out, in a queue of
its own, bounded by the pool timeout like the pool's own wait (a 503 `Retry-After` for the
request). The pool's public checkout and checkin events count the connections out, whoever took
them; one taken without a turn (a session's next transaction, a migration) is counted and never
queued here: it waits in the pool, if at all (decision 120).

A pooled PostgreSQL connection may have died since its last use. `pool_pre_ping` costs three
round trips on every checkout with asyncpg (BEGIN, the ping, ROLLBACK), more than the query it
guards. Instead one whose server end closed (a restart, `pg_terminate_backend`) is seen closed by
the event loop for free, in the checkout event, and the whole pool is replaced; only one idle
long enough for a silent drop (a firewall, a NAT timeout) gets a one-round-trip ping before our
code uses it (decision 121).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
from sqlalchemy import event, exc
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from order_api.platform.db.reading import READING_OPTIONS

# Busy connections come back within milliseconds; one idle this long is pinged before use.
PING_AFTER_IDLE_SECONDS = 5.0
_RETURNED_AT = "order_api.returned_at"


class Turns:
    """A FIFO queue for the pool's connections. Written by hand: asyncio's Semaphore cannot count
    a checkout that did not wait for it, and every checkout must count."""

    def __init__(self, capacity: int, wait_seconds: float) -> None:
        self.capacity = capacity
        self.wait_seconds = wait_seconds
        self._out = 0  # connections checked out, by anyone
        self._granted = 0  # turns given whose checkout has not happened yet
        self._waiting: deque[asyncio.Future[None]] = deque()

    async def take(self) -> None:
        """Wait, first come first served, until a connection is free for us; then check it out."""
        if not self._waiting and self._out + self._granted < self.capacity:
            self._granted += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            # asyncio.timeout, not wait_for: no task per wait.
            async with asyncio.timeout(self.wait_seconds):
                await turn
        except BaseException as error:
            if turn.done() and not turn.cancelled():
                self.give_up()  # given just as we stopped waiting: the next in line has it
            if isinstance(error, TimeoutError):
                # What the pool raises when its own wait runs out: the API answers 503.
                raise exc.TimeoutError(
                    f"no connection free after {self.wait_seconds:g} s (pool of {self.capacity})"
                ) from None
            raise

    def give_up(self) -> None:
        """A turn taken but not used: its checkout failed, or never came."""
        self._granted = max(self._granted - 1, 0)
        self._serve()

    def checked_out(self) -> None:
        self._out += 1
        self._granted = max(self._granted - 1, 0)

    def checked_in(self) -> None:
        self._out -= 1
        self._serve()

    def _serve(self) -> None:
        while self._waiting and self._out + self._granted < self.capacity:
            turn = self._waiting.popleft()
            if not turn.done():  # not timed out meanwhile
                turn.set_result(None)
                self._granted += 1


class Checkouts:
    """Connections of one engine, each taken in turn. `turns`: None where nobody else shares the
    pool (SQLite, the process's own file)."""

    def __init__(self, engine: AsyncEngine, turns: Turns | None) -> None:
        self.engine = engine
        self.turns = turns
        self._reading_engine = engine.execution_options(**READING_OPTIONS)
        self._pinging = engine.dialect.driver == "asyncpg"

    @asynccontextmanager
    async def connection(self, *, reading: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection held until the block ends. `reading`: outside any transaction, where
        every statement commits on its own, and refusing writes (`reading.py`)."""
        engine = self._reading_engine if reading else self.engine

        async def connect() -> AsyncConnection:
            return await engine.connect()

        async def discard(connection: AsyncConnection, error: Exception) -> None:
            await connection.invalidate(error)
            await connection.close()

        connection = await self.checkout(connect, discard)
        try:
            yield connection
        finally:
            await connection.close()

    async def checkout(
        self,
        connect: Callable[[], Awaitable[AsyncConnection]],
        discard: Callable[[AsyncConnection, Exception], Awaitable[None]],
    ) -> AsyncConnection:
        """`connect()`'s connection, taken in turn, pinged first when it has been idle long
        enough. One that fails its ping is discarded and another taken: the pool's each in turn
        at worst, and a discarded one reconnects when it is next taken."""
        error: Exception | None = None
        for _ in range(self.turns.capacity + 1 if self.turns else 1):
            connection = await self._connect_in_turn(connect)
            if not self._pinging or _idle_seconds(connection) < PING_AFTER_IDLE_SECONDS:
                return connection
            try:
                driver = _pooled(connection).driver_connection
                assert driver is not None, "a connection checked out"
                await driver.fetchrow(";", timeout=self.turns.wait_seconds if self.turns else None)
            except Exception as failed:  # any failure: not to be trusted with a request
                error = failed
                await discard(connection, failed)
                continue
            return connection
        raise exc.DBAPIError(";", None, error or Exception(), connection_invalidated=True)

    async def _connect_in_turn(
        self, connect: Callable[[], Awaitable[AsyncConnection]]
    ) -> AsyncConnection:
        if self.turns is None:
            return await connect()
        await self.turns.take()
        try:
            return await connect()
        except BaseException:
            self.turns.give_up()
            raise


def count_checkouts(engine: AsyncEngine, turns: Turns) -> None:
    """Every checkout and checkin of the engine's pool counted for the turns, whoever made it."""
    event.listen(engine.sync_engine, "checkout", lambda *_: turns.checked_out())
    event.listen(engine.sync_engine, "checkin", lambda *_: turns.checked_in())


def replace_closed_connections(engine: AsyncEngine) -> None:
    """The free half of the check, in the pool's own checkout: a connection the event loop saw
    closed is never handed out. And the time each connection was last returned, for the ping."""
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "checkout")
    def check(_: DBAPIConnection, record: ConnectionPoolEntry, __: object) -> None:
        driver: asyncpg.Connection | None = record.driver_connection
        if driver is not None and driver.is_closed():
            # A restart closes every connection: replace them all, not one per request. The
            # pool then discards this one and checks out another (counted once, afterwards).
            raise exc.InvalidatePoolError("the server closed this connection")

    @event.listens_for(sync_engine, "checkin")
    def note_return(_: DBAPIConnection | None, record: ConnectionPoolEntry) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(sync_engine, "connect")
    def note_fresh(_: DBAPIConnection, record: ConnectionPoolEntry) -> None:
        record.info[_RETURNED_AT] = time.monotonic()  # just opened: no ping needed yet


def _pooled(connection: AsyncConnection) -> PoolProxiedConnection:
    """The pooled connection under a connection just checked out (so no reconnect to await)."""
    sync = connection.sync_connection
    assert sync is not None, "a started connection"
    return sync.connection


def _idle_seconds(connection: AsyncConnection) -> float:
    returned_at = _pooled(connection).info.get(_RETURNED_AT, 0.0)
    return time.monotonic() - float(returned_at)
