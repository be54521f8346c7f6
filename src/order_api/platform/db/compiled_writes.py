"""Hot writes: a Core INSERT, UPDATE or DELETE compiled once for asyncpg and run on the
session's own connection, inside the session's transaction.

SQLAlchemy's execution layers cost ~60 µs a statement over asyncpg's own (101 against 41 µs,
measured), and an order runs eight. Values go through the columns' own bind processors (JSON,
enums, UTC datetimes), and missing ones take the columns' scalar defaults, so the rows written
are the ones SQLAlchemy would write.

The transaction stays SQLAlchemy's: a statement that would open it (asyncpg not yet in a
transaction block) runs through SQLAlchemy, which begins it; commit and rollback are the
session's. On SQLite every statement runs through SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import asyncpg
from sqlalchemy import Table
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import UpdateBase

from order_api.platform.db.compiled_select import DRIVER_ERRORS, Row, connection_lost

_CONSTRAINT_ERRORS = (asyncpg.IntegrityConstraintViolationError,)
_NO_DEFAULT = object()
Processor = Callable[[Any], Any] | None


class CompiledWrite:
    """One DML statement with named bind parameters. `elsewhere`: the statement to run on other
    databases, where it differs (an `ON CONFLICT` built with another dialect's `insert`)."""

    def __init__(self, statement: UpdateBase, *, elsewhere: UpdateBase | None = None) -> None:
        self.statement = statement
        self.elsewhere = statement if elsewhere is None else elsewhere
        dialect = asyncpg_dialect()  # type: ignore[no-untyped-call]
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        defaults = _scalar_defaults(statement)
        self._binds: list[tuple[str, Any, Processor]] = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            if bind.expanding:
                raise ValueError(f"{name}: IN lists are not compiled ahead")
            fixed = _NO_DEFAULT if bind.required else bind.value
            default = defaults.get(name, _NO_DEFAULT) if fixed is _NO_DEFAULT else fixed
            self._binds.append((name, default, bind.type.bind_processor(dialect)))
        self._returned: list[tuple[str, Processor]] = [
            (str(column.key), column.type.result_processor(dialect, None))
            for column in statement.exported_columns
        ]

    async def execute(
        self, connection: AsyncConnection, rows: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    ) -> None:
        """Run once, or once per row of a list (asyncpg pipelines them)."""
        many = list(rows) if not isinstance(rows, Mapping) else [rows]
        driver = _driver_in_transaction(connection)
        if driver is None:
            await connection.execute(self._for(connection), many)
            return
        call: Awaitable[object] = (
            driver.execute(self.sql, *self._arguments(many[0]))
            if len(many) == 1
            else driver.executemany(self.sql, [self._arguments(row) for row in many])
        )
        await self._on_driver(connection, driver, call)

    async def first(self, connection: AsyncConnection, parameters: Mapping[str, Any]) -> Row | None:
        """The RETURNING row, or None when no row was written."""
        driver = _driver_in_transaction(connection)
        if driver is None:
            result = await connection.execute(self._for(connection), parameters)
            row = result.first()
            return None if row is None else dict(row._mapping)
        record = await self._on_driver(
            connection, driver, driver.fetchrow(self.sql, *self._arguments(parameters))
        )
        if record is None:
            return None
        return {
            key: value if process is None else process(value)
            for (key, process), value in zip(self._returned, record.values(), strict=True)
        }

    async def scalar(self, connection: AsyncConnection, parameters: Mapping[str, Any]) -> Any:
        """The RETURNING row's first value, or None when no row was written."""
        row = await self.first(connection, parameters)
        return None if row is None else next(iter(row.values()))

    def _for(self, connection: AsyncConnection) -> UpdateBase:
        """The statement SQLAlchemy runs on this connection's database."""
        return self.statement if connection.dialect.name == "postgresql" else self.elsewhere

    def _arguments(self, parameters: Mapping[str, Any]) -> list[Any]:
        arguments = []
        for name, default, process in self._binds:
            value = parameters.get(name, _NO_DEFAULT)
            if value is not _NO_DEFAULT:
                arguments.append(value if process is None else process(value))
            elif default is _NO_DEFAULT:
                raise KeyError(f"{name}: no value and no scalar default for {self.sql[:60]!r}")
            else:  # left out: a column's NULL stays SQL NULL (not JSON null), as SQLAlchemy has it
                arguments.append(
                    default if process is None or default is None else process(default)
                )
        return arguments

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


def _driver_in_transaction(connection: AsyncConnection) -> asyncpg.Connection | None:
    """The asyncpg connection, when the statement can skip SQLAlchemy: PostgreSQL, and the
    transaction already open on the database (the first statement opens it through SQLAlchemy)."""
    sync = connection.sync_connection
    if connection.dialect.name != "postgresql" or sync is None or sync.invalidated:
        return None
    driver: asyncpg.Connection = sync.connection.driver_connection  # type: ignore[assignment]
    return driver if driver.is_in_transaction() else None


def _scalar_defaults(statement: UpdateBase) -> dict[str, Any]:
    """What the written table's columns take when an INSERT leaves them out, where constant."""
    table = getattr(statement, "table", None)
    if not isinstance(table, Table):
        return {}
    # No column has a server default: a nullable one left out is NULL, as SQLAlchemy writes it.
    defaults: dict[str, Any] = {column.key: None for column in table.columns if column.nullable}
    for column in table.columns:
        if column.default is not None and column.default.is_scalar:
            defaults[column.key] = column.default.arg
    return defaults
