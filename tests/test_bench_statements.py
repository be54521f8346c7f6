"""The bare order baseline replays the service's own SQL: the caller read, compiled the same way."""

from __future__ import annotations

from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from bench.order_statements import SELECT_USER
from order_api.auth.repository import CALLER_ROW


def test_the_baselines_caller_read_is_the_services() -> None:
    compiled = CALLER_ROW.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
    assert str(compiled) == SELECT_USER
