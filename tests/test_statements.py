"""Statements run on asyncpg, against the real databases: the rows SQLAlchemy would write, always
inside the session's transaction, refused in a reading session, errors as SQLAlchemy raises them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from order_api.jobs.models import OutboxMessage, OutboxStatus
from order_api.platform.db import (
    DatabaseReader,
    Sessions,
    Statement,
    WriteWhileReading,
    create_engine,
    create_sessions,
    reading_session,
)
from order_api.platform.errors import is_transient
from tests.support import make_settings

INSERT_MESSAGE = Statement(insert(OutboxMessage))
RETRY_MESSAGE = Statement(
    update(OutboxMessage)
    .where(OutboxMessage.id == bindparam("message_id"))
    .values(attempts=OutboxMessage.attempts + 1, last_error=bindparam("error"))
    .returning(OutboxMessage.attempts, OutboxMessage.available_at)
)
FIRST_OF_ALL = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


@pytest.fixture
async def sessionmaker(migrated_database: str, tmp_path: Path) -> AsyncIterator[Sessions]:
    settings = make_settings(migrated_database, tmp_path)
    engine: AsyncEngine = create_engine(settings)
    yield create_sessions(engine, settings)
    await engine.dispose()


def message(**values: object) -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "kind": "probe",
        "payload": {"n": 1, "text": "é"},
        "available_at": FIRST_OF_ALL,
        "created_at": FIRST_OF_ALL,
        **values,
    }


async def stored(sessionmaker: Sessions, message_id: object) -> OutboxMessage | None:
    async with sessionmaker() as session:
        return await session.get(OutboxMessage, message_id)


async def test_rows_are_written_as_sqlalchemy_writes_them(
    sessionmaker: Sessions,
) -> None:
    first, second = message(), message(payload=[1, None], attempts=2, last_error="x")
    many = [message(), message()]
    async with sessionmaker() as session:
        connection = await session.connection()
        await INSERT_MESSAGE.execute(connection, first)  # opens the transaction on PostgreSQL
        await INSERT_MESSAGE.execute(connection, second)
        await INSERT_MESSAGE.execute(connection, many)  # rows of one call have the same keys
        await session.commit()
    for row in many:
        assert await stored(sessionmaker, row["id"]) is not None
    one = await stored(sessionmaker, first["id"])
    two = await stored(sessionmaker, second["id"])
    assert one is not None
    assert two is not None
    # Left out: the columns' defaults; a nullable column left out is SQL NULL.
    assert (one.status, one.attempts, one.lease_token, one.completed_at) == (
        OutboxStatus.PENDING,
        0,
        None,
        None,
    )
    assert one.payload == {"n": 1, "text": "é"}
    assert one.available_at == FIRST_OF_ALL
    payload: object = two.payload  # a JSON column holds any JSON, a list too
    assert (payload, two.attempts, two.last_error) == ([1, None], 2, "x")


async def test_returning_gives_the_columns_typed(
    sessionmaker: Sessions,
) -> None:
    written = message()
    async with sessionmaker() as session:
        connection = await session.connection()
        await INSERT_MESSAGE.execute(connection, written)
        row = await RETRY_MESSAGE.first(connection, {"message_id": written["id"], "error": "e"})
        missing = await RETRY_MESSAGE.scalar(connection, {"message_id": uuid.uuid4(), "error": ""})
        await session.commit()
    assert row == {"attempts": 1, "available_at": FIRST_OF_ALL}
    assert row["available_at"].utcoffset() == timedelta(0)
    assert missing is None


@pytest.mark.parametrize("opened_by_sqlalchemy", [True, False])
async def test_a_write_belongs_to_the_sessions_transaction(
    sessionmaker: Sessions, opened_by_sqlalchemy: bool
) -> None:
    """Whether the write opens the transaction or one is open already, a rollback undoes it."""
    opener, written = message(), message()
    async with sessionmaker() as session:
        connection = await session.connection()
        if opened_by_sqlalchemy:
            await connection.execute(insert(OutboxMessage), [opener])
        await INSERT_MESSAGE.execute(connection, written)
        await session.rollback()
    assert await stored(sessionmaker, written["id"]) is None
    assert await stored(sessionmaker, opener["id"]) is None


async def test_a_reading_session_refuses_direct_writes(
    sessionmaker: Sessions,
) -> None:
    written = message()
    async with reading_session(sessionmaker) as session:
        with pytest.raises(WriteWhileReading):
            await INSERT_MESSAGE.execute(await session.connection(), written)
    assert await stored(sessionmaker, written["id"]) is None


async def test_the_reader_refuses_writes(sessionmaker: Sessions) -> None:
    """Its connection commits each statement on its own: a write there is a bug."""
    with pytest.raises(WriteWhileReading):
        await DatabaseReader(sessionmaker).fetch_one(INSERT_MESSAGE, **message())


async def test_a_failed_write_is_sqlalchemys_error_and_rolls_back_whole(
    sessionmaker: Sessions,
) -> None:
    first = message()
    async with sessionmaker() as session:
        connection = await session.connection()
        await INSERT_MESSAGE.execute(connection, first)
        with pytest.raises(DBAPIError) as raised:
            await INSERT_MESSAGE.execute(connection, message(id=first["id"]))  # the same key
        await session.rollback()
    assert isinstance(raised.value, IntegrityError)  # as SQLAlchemy raises it, on both databases
    assert not is_transient(raised.value)  # a real fault: a 500, not a 503 to retry
    assert await stored(sessionmaker, first["id"]) is None


INSERT_IF_NEW = Statement(
    postgresql.insert(OutboxMessage).on_conflict_do_nothing(index_elements=[OutboxMessage.id]),
    elsewhere=sqlite.insert(OutboxMessage).on_conflict_do_nothing(
        index_elements=[OutboxMessage.id]
    ),
)


@pytest.mark.parametrize("opens_the_transaction", [True, False])
async def test_a_statement_with_another_for_other_databases_runs_on_each(
    sessionmaker: Sessions, opens_the_transaction: bool
) -> None:
    """First in its transaction it goes through SQLAlchemy: PostgreSQL's own statement there too."""
    written = message()
    async with sessionmaker() as session:
        connection = await session.connection()
        if not opens_the_transaction:
            await INSERT_MESSAGE.execute(connection, message())
        await INSERT_IF_NEW.execute(connection, written)
        await INSERT_IF_NEW.execute(connection, {**written, "kind": "again"})  # no error, no row
        await session.commit()
    row = await stored(sessionmaker, written["id"])
    assert row is not None
    assert row.kind == "probe"


def test_a_value_without_a_default_is_required() -> None:
    with pytest.raises(KeyError, match="kind"):
        INSERT_MESSAGE.arguments({"id": uuid.uuid4(), "payload": {}})


def test_in_lists_are_refused_ahead() -> None:
    statement = update(OutboxMessage).where(OutboxMessage.id.in_(bindparam("ids", expanding=True)))
    with pytest.raises(ValueError, match="IN lists"):
        Statement(statement.values(attempts=0))


async def test_reading_back_with_sqlalchemy_agrees(
    sessionmaker: Sessions,
) -> None:
    written = message(status=OutboxStatus.DISPATCHED)
    async with sessionmaker() as session:
        await INSERT_MESSAGE.execute(await session.connection(), written)
        await session.commit()
    async with sessionmaker() as session:
        status = await session.scalar(
            select(OutboxMessage.status).where(OutboxMessage.id == written["id"])
        )
    assert status is OutboxStatus.DISPATCHED


SET_PAYLOAD = Statement(
    update(OutboxMessage)
    .where(OutboxMessage.id == bindparam("message_id"))
    .values(payload=bindparam("new_payload", type_=OutboxMessage.payload.type))
    .returning(OutboxMessage.status)
)


async def test_named_values_go_through_their_types_processors(
    sessionmaker: Sessions,
) -> None:
    """A JSON value is serialized, an enum comes back as its member, a naive instant is refused:
    on asyncpg directly as through SQLAlchemy."""
    written = message()
    async with sessionmaker() as session:
        connection = await session.connection()
        await INSERT_MESSAGE.execute(connection, written)
        changed = {"message_id": written["id"], "new_payload": {"changed": [1, 2]}}
        status = await SET_PAYLOAD.scalar(connection, changed)
        with pytest.raises(ValueError, match="naive"):
            INSERT_MESSAGE.arguments(message(created_at=datetime(2026, 11, 24, 8, 0)))
        await session.commit()
    assert status is OutboxStatus.PENDING
    row = await stored(sessionmaker, written["id"])
    assert row is not None
    assert row.payload == {"changed": [1, 2]}
