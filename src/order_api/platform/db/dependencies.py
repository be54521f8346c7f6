"""What routes take from the database: the request's session, the reader, the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.requests import HTTPConnection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from order_api.platform.db.sessions import Sessions
from order_api.platform.db.statements import DatabaseReader

SAFE_METHODS = frozenset({"GET", "HEAD"})


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request. GET and HEAD only read (HTTP's safe methods): outside any
    transaction. Any other method: commit when the handler succeeds, roll back when it raises."""
    sessions: Sessions = request.app.state.sessionmaker
    if request.method in SAFE_METHODS:
        async with sessions.reading() as session:
            yield session
        return
    async with sessions() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


# scope="function": the commit runs before the response is sent (p99 9-11x worse otherwise, notes).
SessionDep = Annotated[AsyncSession, Depends(request_session, scope="function")]


async def request_reader(connection: HTTPConnection) -> DatabaseReader:
    reader: DatabaseReader = connection.app.state.reader
    return reader


ReaderDep = Annotated[DatabaseReader, Depends(request_reader)]


async def app_engine(connection: HTTPConnection) -> AsyncEngine:
    engine: AsyncEngine = connection.app.state.engine
    return engine


EngineDep = Annotated[AsyncEngine, Depends(app_engine)]
