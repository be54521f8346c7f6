"""Hot reads on PostgreSQL: a Core SELECT compiled once, run on the session's own asyncpg
connection. SQLAlchemy's execution layers cost ~300 µs a statement there (measured, see
docs/benchmarks.md); on SQLite the same statement runs through the session as usual."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from sqlalchemy import Select
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

Row = dict[str, Any]
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


class CompiledSelect:
    """One SELECT with named bind parameters; rows come back as dicts of column label to value,
    typed alike on both databases (UUID, aware UTC datetimes, bool, int, str)."""

    def __init__(self, statement: Select[*tuple[Any, ...]]) -> None:
        self.statement = statement
        compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
        self.sql = str(compiled)
        self.parameter_order = tuple(compiled.positiontup or ())
        # Values written into the statement itself; the named ones come with each call.
        self.fixed = {
            name: bind.value for name, bind in compiled.binds.items() if not bind.required
        }

    async def fetch_all(self, session: AsyncSession, **parameters: Any) -> list[Row]:
        connection = await session.connection()
        if connection.dialect.name != "postgresql":
            result = await session.execute(self.statement, parameters)
            return [dict(row._mapping) for row in result]
        raw = await connection.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
        try:
            records = await driver.fetch(self.sql, *self._arguments(parameters))
        except _DRIVER_ERRORS as error:
            # As SQLAlchemy would raise it: a timeout or a lost connection is then a 503.
            lost = driver.is_closed()
            if lost:
                await connection.invalidate(error)
            raise DBAPIError(self.sql, None, error, connection_invalidated=lost) from error
        return [dict(record) for record in records]

    async def fetch_one(self, session: AsyncSession, **parameters: Any) -> Row | None:
        rows = await self.fetch_all(session, **parameters)
        return rows[0] if rows else None

    async def fetch_value(self, session: AsyncSession, **parameters: Any) -> Any:
        row = await self.fetch_one(session, **parameters)
        return None if row is None else next(iter(row.values()))

    def _arguments(self, parameters: Mapping[str, Any]) -> list[Any]:
        return [
            parameters[name] if name in parameters else self.fixed[name]
            for name in self.parameter_order
        ]
