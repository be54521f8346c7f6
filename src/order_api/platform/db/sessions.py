"""Sessions whose first connection is taken in turn (`checkouts.py`), and the connection a
session's transaction holds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from order_api.config import Settings
from order_api.platform.db.checkouts import Checkouts, Turns, count_checkouts
from order_api.platform.db.reading import (
    READING,
    READING_OPTIONS,
    refuse_writes_in_reading_sessions,
)

_AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}
# session.info keys: the `Sessions` a session came from, and the options its connections take.
_SESSIONS = "order_api.sessions"
_OPTIONS = "order_api.connection_options"


class Sessions:
    """Sessions of one engine. Each checks its connection out as it opens, in turn; one that
    commits gives it back, and takes one again (without queueing) when it next needs one."""

    def __init__(self, checkouts: Checkouts) -> None:
        self.checkouts = checkouts
        # A Session class of its own, so session events (the outbox relay's) apply to ours only.
        self.session_class: type[Session] = type("OrderApiSession", (Session,), {})
        refuse_writes_in_reading_sessions(self.session_class)
        self._sessionmaker = async_sessionmaker(
            checkouts.engine,
            expire_on_commit=False,
            autoflush=False,
            sync_session_class=self.session_class,
        )

    @property
    def engine(self) -> AsyncEngine:
        return self.checkouts.engine

    @asynccontextmanager
    async def __call__(self, *, autocommit: bool = False) -> AsyncIterator[AsyncSession]:
        """A session whose transactions the caller commits; what it leaves open is rolled back.
        `autocommit`: no transactions, each statement durable as it returns."""
        async with self._sessionmaker() as session:
            await self.connect_in_turn(session, _AUTOCOMMIT if autocommit else {})
            yield session

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A session for reads only, outside any transaction: no BEGIN and COMMIT round trips, and
        on SQLite no `BEGIN IMMEDIATE` write lock (readers would queue on it one by one)."""
        async with self._sessionmaker() as session:
            session.info[READING] = True
            await self.connect_in_turn(session, READING_OPTIONS)
            yield session

    async def connect_in_turn(self, session: AsyncSession, options: Mapping[str, Any]) -> None:
        """The session's next connection, checked out in turn, with these execution options."""
        session.info[_SESSIONS], session.info[_OPTIONS] = self, options

        async def connect() -> AsyncConnection:
            return await session.connection(execution_options=dict(options))

        async def discard(_: AsyncConnection, __: Exception) -> None:
            await session.invalidate()

        await self.checkouts.checkout(connect, discard)


def create_sessions(engine: AsyncEngine, settings: Settings) -> Sessions:
    """The sessions of an engine: one `Sessions` per engine, so one queue for its pool."""
    if settings.is_sqlite:  # the pool is this process's own file's alone: no turns to take
        return Sessions(Checkouts(engine, None))
    capacity = settings.db_pool_size + settings.db_max_overflow
    turns = Turns(capacity, settings.db_pool_timeout_seconds)
    count_checkouts(engine, turns)
    return Sessions(Checkouts(engine, turns))


async def continue_in_turn(session: AsyncSession) -> None:
    """For a session that committed or rolled back and has more to do: its next connection is
    taken in turn, behind the requests already waiting, not ahead of them in the pool, where a
    newcomer would wait through every turn given meanwhile (decision 120)."""
    sessions: Sessions | None = session.info.get(_SESSIONS)
    if sessions is not None:
        await sessions.connect_in_turn(session, session.info[_OPTIONS])


def reading_session(sessions: Sessions) -> AbstractAsyncContextManager[AsyncSession]:
    return sessions.reading()


_HELD_CONNECTION = "order_api.held_connection"


async def transaction_connection(session: AsyncSession) -> AsyncConnection:
    """`session.connection()`, without its greenlet round trip (~15 µs) when the session's
    current transaction already holds the connection: an order asks eight times."""
    transaction = session.sync_session.get_transaction()
    held = session.info.get(_HELD_CONNECTION)
    if held is not None and held[0] is transaction and transaction.is_active:
        connection: AsyncConnection = held[1]
        return connection
    connection = await session.connection()
    session.info[_HELD_CONNECTION] = (session.sync_session.get_transaction(), connection)
    return connection
