"""Hot reads on PostgreSQL: a Core SELECT compiled once, run on the session's own asyncpg
connection. SQLAlchemy's execution layers cost ~300 µs a statement there (measured, see
docs/benchmarks.md); on SQLite the same statement runs through the session as usual."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from sqlalchemy import Select
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncSession

Row = dict[str, Any]


class CompiledSelect:
    """One SELECT with named bind parameters; rows come back as dicts of column label to value,
    typed alike on both databases (UUID, aware UTC datetimes, bool, int, str)."""

    def __init__(self, statement: Select[*tuple[Any, ...]]) -> None:
        self.statement = statement
        compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
        self.sql = str(compiled)
        self.parameter_order = tuple(compiled.positiontup or ())

    async def fetch_all(self, session: AsyncSession, **parameters: Any) -> list[Row]:
        driver = await _postgresql_driver(session)
        if driver is None:
            result = await session.execute(self.statement, parameters)
            return [dict(row._mapping) for row in result]
        records = await driver.fetch(self.sql, *self._arguments(parameters))
        return [dict(record) for record in records]

    async def fetch_one(self, session: AsyncSession, **parameters: Any) -> Row | None:
        rows = await self.fetch_all(session, **parameters)
        return rows[0] if rows else None

    async def fetch_value(self, session: AsyncSession, **parameters: Any) -> Any:
        row = await self.fetch_one(session, **parameters)
        return None if row is None else next(iter(row.values()))

    def _arguments(self, parameters: Mapping[str, Any]) -> list[Any]:
        return [parameters[name] for name in self.parameter_order]


async def _postgresql_driver(session: AsyncSession) -> asyncpg.Connection | None:
    connection = await session.connection()
    if connection.dialect.name != "postgresql":
        return None
    raw = await connection.get_raw_connection()
    driver: asyncpg.Connection = raw.driver_connection  # type: ignore[assignment]
    return driver
