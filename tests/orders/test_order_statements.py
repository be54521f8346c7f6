"""The SQL one keyed order sends to PostgreSQL, call by call: the statements the bench's bare
order baseline replays (bench/order_statements.py), so the baseline stays the service's twin."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import asyncpg
import pytest
from sqlalchemy import Engine, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from bench.order_statements import ORDER_STATEMENTS
from tests.accounts import Account, Shop
from tests.catalogue import create_product, order

pytestmark = pytest.mark.only_backend("postgresql")

# Set while the request under test runs; the app's background tasks (the relay) do not see it.
_SENT: ContextVar[list[str] | None] = ContextVar("sql_sent", default=None)
_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK")
# The ping platform/db/checkouts.py sends down a connection idle for a while: not the order's.
_IDLE_PING = ";"


def _note(query: str) -> None:
    sent = _SENT.get()
    statement = query.strip()
    if sent is None or statement == _IDLE_PING:
        return
    if not statement.upper().startswith(_TRANSACTION_CONTROL):
        sent.append(query)


def _note_driver_call(record: asyncpg.connection.LoggedQuery) -> None:
    _note(record.query)


def _note_sqlalchemy_call(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    _note(statement)


def _log_driver_calls(
    dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
) -> None:
    # Statements sent to asyncpg directly pass no SQLAlchemy event: asyncpg's own log sees them.
    driver: asyncpg.Connection = proxy.driver_connection  # type: ignore[assignment]
    driver.add_query_logger(_note_driver_call)


@contextmanager
def calls_sent(engine: Engine) -> Iterator[list[str]]:
    """The SQL of each call to PostgreSQL made by code run inside the `with` block, but BEGIN
    and COMMIT. A call of asyncpg's executemany counts once: its rows go in one round trip."""
    sent: list[str] = []
    token = _SENT.set(sent)
    event.listen(engine, "checkout", _log_driver_calls)
    event.listen(engine, "before_cursor_execute", _note_sqlalchemy_call)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", _note_sqlalchemy_call)
        event.remove(engine, "checkout", _log_driver_calls)
        _SENT.reset(token)


async def test_a_keyed_order_sends_the_statements_the_bench_replays(
    shop: Shop, staff: Account, customer: Account
) -> None:
    product = await create_product(shop, staff.headers, stock=10)
    headers = {**customer.headers, "Idempotency-Key": str(uuid.uuid4())}
    # The first keyed order of a process also purges expired keys: not the one measured.
    assert (await order(shop, headers, [(product["id"], 1)])).status_code == 201
    headers = {**customer.headers, "Idempotency-Key": str(uuid.uuid4())}
    engine: Engine = shop.app.state.engine.sync_engine

    with calls_sent(engine) as sent:
        placed = await order(shop, headers, [(product["id"], 1)])

    assert placed.status_code == 201, placed.text
    # asyncpg logs a call once it returns, SQLAlchemy's event before it goes: the order of the
    # two kinds interleaved is not kept, so the calls are compared as a multiset.
    assert Counter(sent) == Counter(ORDER_STATEMENTS), sent
    assert len(sent) == 8  # the caller, the claim; stock, order, line, history, outbox, outcome
