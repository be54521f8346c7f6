"""The async engine: PostgreSQL (asyncpg, pooled) in production, SQLite (aiosqlite) embedded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Dialect, event, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from order_api.config import Settings
from order_api.platform.db.checkouts import replace_closed_connections
from order_api.platform.db.reading import refuse_writes_on_reading_connections
from order_api.platform.telemetry.metrics import track_connection_pool

SQLITE_BUSY_TIMEOUT_MS = 5000


class DatabaseUnreachable(ConnectionError):
    """No connection to PostgreSQL could be opened: refused, unknown host, connect timeout."""


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.resolved_database_url
    if settings.is_sqlite:
        engine = _create_sqlite_engine(url, echo=settings.debug)
    else:
        engine = _create_postgres_engine(url, settings)
    track_connection_pool(engine)
    refuse_writes_on_reading_connections(engine)
    return engine


def _create_postgres_engine(url: str, settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        url,
        echo=settings.debug,
        # Bound values (password and token hashes) never reach logs or error messages.
        hide_parameters=True,
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

    replace_closed_connections(engine)
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
