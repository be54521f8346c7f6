"""Sessions and connections that only read, outside any transaction, and the guards that keep
them so: in one, every statement would commit on its own, so a write there is a bug."""

from __future__ import annotations

from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.sql.dml import UpdateBase

# The flag, in a session's `info` and a connection's execution options.
READING = "order_api.reading"
READING_OPTIONS = {"isolation_level": "AUTOCOMMIT", READING: True}


class WriteWhileReading(RuntimeError):
    """A bug: a write in a reading session, where every statement would commit on its own."""


def refuse_writes_in_reading_sessions(session_class: type[Session]) -> None:
    event.listen(session_class, "do_orm_execute", _refuse_orm_writes)
    event.listen(session_class, "before_flush", _refuse_flushes)


def refuse_writes_on_reading_connections(engine: AsyncEngine) -> None:
    """The same guard for Core statements run on a reading session's connection."""

    @event.listens_for(engine.sync_engine, "before_execute")
    def refuse(connection: Connection, statement: object, *_: object) -> None:
        if connection.get_execution_options().get(READING) and isinstance(statement, UpdateBase):
            raise WriteWhileReading("a reading session runs no INSERT, UPDATE or DELETE")


def _refuse_orm_writes(state: ORMExecuteState) -> None:
    if state.session.info.get(READING) and not state.is_select:
        raise WriteWhileReading("a reading session only runs SELECTs")


def _refuse_flushes(session: Session, *_: object) -> None:
    if session.info.get(READING) and (session.new or session.dirty or session.deleted):
        raise WriteWhileReading("a reading session flushes no changes")
