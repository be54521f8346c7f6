"""The async engine for SQLite or PostgreSQL, the model base, and the per-request session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Connection, DateTime, Dialect, MetaData, TypeDecorator, event, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, ORMExecuteState, Session
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.dml import UpdateBase

from order_api.config import Settings
from order_api.platform.db.fair_pool import FairAsyncQueuePool
from order_api.platform.db.stale_connections import replace_stale_connections
from order_api.platform.telemetry.metrics import track_connection_pool

# Stable constraint names: migrations can drop what they created; `alembic check` sees no drift.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SQLITE_BUSY_TIMEOUT_MS = 5000
SAFE_METHODS = frozenset({"GET", "HEAD"})
READING = "order_api.reading"  # session.info flag of a session outside any transaction


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every database: SQLite hands back naive values otherwise."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: store timezone-aware UTC values")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def create_engine(settings: Settings) -> AsyncEngine:
    engine = _create_engine(settings)
    track_connection_pool(engine)
    refuse_core_writes_when_reading(engine)
    return engine


class DatabaseUnreachable(ConnectionError):
    """No connection to PostgreSQL could be opened: refused, unknown host, connect timeout."""


def _create_engine(settings: Settings) -> AsyncEngine:
    url = settings.resolved_database_url
    if settings.is_sqlite:
        return _create_sqlite_engine(url, echo=settings.debug)
    engine = create_async_engine(
        url,
        echo=settings.debug,
        # Bound values (password and token hashes) never reach logs or error messages.
        hide_parameters=True,
        poolclass=FairAsyncQueuePool,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        connect_args={
            "timeout": settings.db_pool_timeout_seconds,
            "server_settings": {
                "application_name": "order-api",
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "idle_in_transaction_session_timeout": str(settings.db_statement_timeout_ms * 2),
                # Each execution planned for its own values: a generic plan of a prepared
                # statement counted a light customer's orders by reading the whole table when a
                # few customers own most rows (12 ms and growing; decision 99).
                "plan_cache_mode": "force_custom_plan",
            },
        },
    )

    @event.listens_for(engine.sync_engine, "do_connect")
    def connect(
        dialect: Dialect,
        record: ConnectionPoolEntry,
        cargs: tuple[Any, ...],
        cparams: dict[str, Any],
    ) -> DBAPIConnection:
        # asyncpg raises socket errors raw, past SQLAlchemy's wrapping: name them here, at the
        # source, so the API answers 503 for them and not for every other OSError.
        try:
            return dialect.connect(*cargs, **cparams)
        except OSError as error:
            raise DatabaseUnreachable(str(error) or type(error).__name__) from error

    replace_stale_connections(engine, settings.db_pool_timeout_seconds)
    return engine


def _create_sqlite_engine(url: str, *, echo: bool) -> AsyncEngine:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(
        url,
        echo=echo,
        hide_parameters=True,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def configure_connection(dbapi_connection: DBAPIConnection, _: ConnectionPoolEntry) -> None:
        # pysqlite's BEGIN handling breaks SAVEPOINTs and transactional DDL: we emit our own.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def begin_immediate(connection: Connection) -> None:
        # Take the write lock up front: a deferred transaction that reads then writes fails at once
        # with "database is locked" when another writer committed in between, busy timeout or not.
        if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # A Session class of its own, so session events (the outbox relay's) apply to this factory only.
    session_class = type("OrderApiSession", (Session,), {})
    event.listen(session_class, "do_orm_execute", _refuse_writes_when_reading)
    event.listen(session_class, "before_flush", _refuse_flushes_when_reading)
    return async_sessionmaker(
        engine, expire_on_commit=False, autoflush=False, sync_session_class=session_class
    )


class WriteWhileReading(RuntimeError):
    """A bug: a write in a reading session, where every statement would commit on its own."""


def _refuse_writes_when_reading(state: ORMExecuteState) -> None:
    if state.session.info.get(READING) and not state.is_select:
        raise WriteWhileReading("a reading session only runs SELECTs")


def refuse_core_writes_when_reading(engine: AsyncEngine) -> None:
    """The same guard for Core statements run on a reading session's connection."""

    @event.listens_for(engine.sync_engine, "before_execute")
    def refuse(connection: Connection, statement: object, *_: object) -> None:
        if connection.get_execution_options().get(READING) and isinstance(statement, UpdateBase):
            raise WriteWhileReading("a reading session runs no INSERT, UPDATE or DELETE")


def _refuse_flushes_when_reading(session: Session, *_: object) -> None:
    if session.info.get(READING) and (session.new or session.dirty or session.deleted):
        raise WriteWhileReading("a reading session flushes no changes")


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request. GET and HEAD only read (HTTP's safe methods): outside any
    transaction. Any other method: commit when the handler succeeds, roll back when it raises."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    if request.method in SAFE_METHODS:
        async with reading_session(sessionmaker) as session:
            yield session
        return
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


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


# scope="function": the commit runs before the response is sent (p99 9-11x worse otherwise, notes).
SessionDep = Annotated[AsyncSession, Depends(request_session, scope="function")]


@asynccontextmanager
async def reading_session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session for reads only, outside any transaction: no BEGIN and COMMIT round trips, and
    on SQLite no `BEGIN IMMEDIATE` write lock (readers would queue on it one by one)."""
    async with sessionmaker() as session:
        session.info[READING] = True
        options = {"isolation_level": "AUTOCOMMIT", READING: True}
        await session.connection(execution_options=options)
        yield session
