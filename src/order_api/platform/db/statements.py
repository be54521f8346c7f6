"""Statements run on asyncpg directly: a Core statement turned once into the SQL and the
parameter order asyncpg takes, then sent to the pooled asyncpg connection.

SQLAlchemy's execution layers cost ~90 µs of CPU a statement over asyncpg's own (an INSERT 165
against 74 µs; a product read with its checkout 316 against 190; measured), and an order runs
eight (decision 119). Values go through their types' bind processors (JSON, enums, UTC
datetimes) and missing ones take their columns' scalar defaults; rows come back through their
types' result processors: what is written and read is what SQLAlchemy would write and read.

A write goes to asyncpg only inside the transaction SQLAlchemy opened (the first statement of a
transaction goes through SQLAlchemy, which begins it); commit and rollback stay the session's.
A read goes to asyncpg there too, or on a connection outside any transaction. On SQLite every
statement runs through SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias

import asyncpg
from sqlalchemy import BindParameter, Column, ColumnDefault, Select, Table
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import Insert, UpdateBase
from sqlalchemy.sql.visitors import iterate
from sqlalchemy.types import NullType, TypeEngine

from order_api.platform.db.reading import WriteWhileReading
from order_api.platform.db.sessions import Sessions

Row = dict[str, Any]
CoreStatement: TypeAlias = Select[*tuple[Any, ...]] | UpdateBase
Processor = Callable[[Any], Any] | None
DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)
# A connection that raised these is not used again: the client or the link is broken.
_BROKEN_CONNECTION = (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
# Server states that end the session: connection exceptions, shutdowns, a server not up yet.
_ENDED_SESSION_STATES = ("08", "57P01", "57P02", "57P03")
_CONSTRAINT_ERRORS = (asyncpg.IntegrityConstraintViolationError,)
# Named placeholders, `%(name)s`: numbered below as asyncpg's `$n`, with their names in order.
_DIALECT = asyncpg_dialect(paramstyle="pyformat")  # type: ignore[no-untyped-call]
_REQUIRED = object()
_MISSING = object()


class Statement:
    """One SELECT, INSERT, UPDATE or DELETE with named bind parameters; rows come back as dicts
    of column label to value. `elsewhere`: the statement to run on other databases, where it
    differs (an `ON CONFLICT` built with another dialect's `insert`)."""

    def __init__(
        self,
        statement: CoreStatement,
        *,
        elsewhere: CoreStatement | None = None,
    ) -> None:
        self.statement = statement
        self.elsewhere = statement if elsewhere is None else elsewhere
        self.writes = isinstance(statement, UpdateBase)
        compiled = statement.compile(dialect=_DIALECT)
        numbers = _Numbers()
        self.sql: str = compiled.string % numbers
        self._parameters = _parameters(statement, numbers.names, compiled.params)
        self._results = [
            (position, process)
            for position, column in enumerate(statement.exported_columns)
            if (process := _processor(column.type, results=True)) is not None
        ]

    async def all(self, connection: AsyncConnection, parameters: Mapping[str, Any]) -> list[Row]:
        driver = self._driver(connection)
        if driver is None:
            result = await connection.execute(self._for(connection), dict(parameters))
            return [dict(row) for row in result.mappings()]
        call = driver.fetch(self.sql, *self.arguments(parameters))
        return [self._row(record) for record in await self._on_driver(connection, driver, call)]

    async def first(self, connection: AsyncConnection, parameters: Mapping[str, Any]) -> Row | None:
        """The first row (of RETURNING, for a write), or None when there is none."""
        driver = self._driver(connection)
        if driver is None:
            result = await connection.execute(self._for(connection), dict(parameters))
            row = result.mappings().first()
            return None if row is None else dict(row)
        call = driver.fetchrow(self.sql, *self.arguments(parameters))
        record = await self._on_driver(connection, driver, call)
        return None if record is None else self._row(record)

    async def scalar(self, connection: AsyncConnection, parameters: Mapping[str, Any]) -> Any:
        """The first row's first value, or None when there is no row."""
        row = await self.first(connection, parameters)
        return None if row is None else next(iter(row.values()))

    async def execute(
        self, connection: AsyncConnection, rows: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    ) -> None:
        """Run once, or once per row of a list (asyncpg pipelines them)."""
        many = [rows] if isinstance(rows, Mapping) else list(rows)
        driver = self._driver(connection)
        if driver is None:
            await connection.execute(self._for(connection), [dict(row) for row in many])
            return
        call: Awaitable[object] = (
            driver.execute(self.sql, *self.arguments(many[0]))
            if len(many) == 1
            else driver.executemany(self.sql, [self.arguments(row) for row in many])
        )
        await self._on_driver(connection, driver, call)

    def arguments(self, parameters: Mapping[str, Any]) -> list[Any]:
        """The positional arguments asyncpg takes, in the statement's order, processed."""
        arguments = []
        for name, default, process in self._parameters:
            value = parameters.get(name, _MISSING)
            if value is not _MISSING:
                arguments.append(value if process is None else process(value))
            elif default is _REQUIRED:
                raise KeyError(f"{name}: no value and no scalar default for {self.sql[:60]!r}")
            else:  # left out: a column's NULL stays SQL NULL (not JSON null), as SQLAlchemy has it
                arguments.append(
                    default if process is None or default is None else process(default)
                )
        return arguments

    def _driver(self, connection: AsyncConnection) -> asyncpg.Connection | None:
        """asyncpg's connection, when the statement may skip SQLAlchemy: on PostgreSQL, inside
        the transaction SQLAlchemy has open on the database, or for a read, outside any."""
        sync = connection.sync_connection
        if connection.dialect.driver != "asyncpg" or sync is None or sync.invalidated:
            return None
        driver: asyncpg.Connection | None = sync.connection.driver_connection
        if driver is None:
            return None
        if driver.is_in_transaction() or not (self.writes or sync.in_transaction()):
            return driver
        return None

    def _for(self, connection: AsyncConnection) -> CoreStatement:
        """The statement SQLAlchemy runs on this connection's database."""
        return self.statement if connection.dialect.name == "postgresql" else self.elsewhere

    def _row(self, record: asyncpg.Record) -> Row:
        row = dict(record)
        if self._results:
            keys = list(row)
            for position, process in self._results:
                row[keys[position]] = process(record[position])
        return row

    async def _on_driver(
        self, connection: AsyncConnection, driver: asyncpg.Connection, call: Awaitable[Any]
    ) -> Any:
        try:
            return await call
        except DRIVER_ERRORS as error:
            # As SQLAlchemy would raise it: a timeout or a lost connection is then a 503.
            lost = connection_lost(driver, error)
            if lost:
                await connection.invalidate(error)
            # The class SQLAlchemy gives a constraint violation; any other is a DBAPIError.
            kind = IntegrityError if isinstance(error, _CONSTRAINT_ERRORS) else DBAPIError
            raise kind(self.sql, None, error, connection_invalidated=lost) from error


class DatabaseReader:
    """Runs reads, each on a connection taken for it alone and returned at once (as asyncpg's
    `pool.fetch` does): no session, no transaction, and the same turns and checks as any other
    checkout."""

    def __init__(self, sessions: Sessions) -> None:
        self._checkouts = sessions.checkouts
        # On asyncpg a read goes to the driver outside any transaction, on a plain connection (an
        # AUTOCOMMIT one costs ~7 µs to set and reset); elsewhere SQLAlchemy would begin one.
        self._reading = sessions.engine.dialect.driver != "asyncpg"

    async def fetch_all(self, statement: Statement, **parameters: Any) -> list[Row]:
        self._refuse_writes(statement)
        async with self._checkouts.connection(reading=self._reading) as connection:
            return await statement.all(connection, parameters)

    async def fetch_one(self, statement: Statement, **parameters: Any) -> Row | None:
        self._refuse_writes(statement)
        async with self._checkouts.connection(reading=self._reading) as connection:
            return await statement.first(connection, parameters)

    async def fetch_value(self, statement: Statement, **parameters: Any) -> Any:
        row = await self.fetch_one(statement, **parameters)
        return None if row is None else next(iter(row.values()))

    @staticmethod
    def _refuse_writes(statement: Statement) -> None:
        if statement.writes:
            raise WriteWhileReading("the reader runs no INSERT, UPDATE or DELETE")


def connection_lost(driver: asyncpg.Connection, error: Exception) -> bool:
    """Whether a driver error leaves this connection unfit for another statement. SQLAlchemy
    invalidates on these (`is_disconnect`); a statement that reaches asyncpg directly must too,
    or the pool hands the broken connection to the next request (seen: a 500 under kills)."""
    if driver.is_closed() or isinstance(error, _BROKEN_CONNECTION):
        return True
    state = str(getattr(error, "sqlstate", "") or "")
    return state.startswith(_ENDED_SESSION_STATES)


class _Numbers(dict[str, str]):
    """`%(name)s` placeholders numbered `$1`, `$2`, ... in order of first appearance, a name
    seen again keeping its number, as SQLAlchemy numbers them for asyncpg: `%` formatting asks
    its mapping for each placeholder in turn (as a pyformat driver does), and turns `%%` into `%`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __missing__(self, name: str) -> str:
        self.names.append(name)
        number = self[name] = f"${len(self.names)}"
        return number


def _parameters(
    statement: CoreStatement, names: list[str], written: Mapping[str, Any]
) -> list[tuple[str, Any, Processor]]:
    """Per placeholder: its name, its value when a call leaves it out, and its processor."""
    binds = [element for element in iterate(statement) if isinstance(element, BindParameter)]
    if any(bind.expanding or bind.literal_execute for bind in binds):
        raise ValueError("IN lists and literal values are not compiled ahead: use ANY(:list)")
    named: dict[str, BindParameter[Any]] = {}
    for bind in binds:
        known = named.get(bind.key)
        if not bind.unique and (known is None or isinstance(known.type, NullType)):
            named[bind.key] = bind  # the first with a type, where a name appears more than once
    columns = _written_columns(statement)
    parameters: list[tuple[str, Any, Processor]] = []
    for name in names:
        if name in named:
            # One with no type is sent as given; a value for a column whose type processes it
            # (JSON, an enum, UTCDateTime) needs that type: `bindparam(name, type_=...)`.
            bind = named[name]
            default = _REQUIRED if bind.required else bind.effective_value
            parameters.append((name, default, _processor(bind.type)))
        elif name in columns:
            column = columns[name]
            default = (
                written[name] if written.get(name) is not None else _default(statement, column)
            )
            parameters.append((name, default, _processor(column.type)))
        else:  # a value written into the statement itself (`attempts + 1`): sent as written
            parameters.append((name, written[name], None))
    return parameters


def _written_columns(statement: CoreStatement) -> Mapping[str, Column[Any]]:
    table = getattr(statement, "table", None)
    return table.columns if isinstance(table, Table) else {}


def _default(statement: CoreStatement, column: Column[Any]) -> Any:
    """What an INSERT writes in a column left out, where constant; otherwise a value is needed."""
    if not isinstance(statement, Insert):
        return _REQUIRED
    if isinstance(column.default, ColumnDefault):
        return column.default.arg if column.default.is_scalar else _REQUIRED
    if column.default is not None or column.server_default is not None or not column.nullable:
        return _REQUIRED
    return None  # a nullable column left out is NULL, as SQLAlchemy writes it


def _processor(type_: TypeEngine[Any], *, results: bool = False) -> Processor:
    implementation = type_.dialect_impl(_DIALECT)
    if results:
        return implementation.result_processor(_DIALECT, None)
    return implementation.bind_processor(_DIALECT)
