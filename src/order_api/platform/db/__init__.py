"""The database door: the engine, sessions taken in turn, the model base, fast statements on
asyncpg, and page-numbered listings. Other packages import these names from here only."""

from order_api.platform.db.dependencies import (
    EngineDep,
    ReaderDep,
    SessionDep,
    app_engine,
    request_reader,
    request_session,
)
from order_api.platform.db.engine import DatabaseUnreachable, create_engine
from order_api.platform.db.models import Base, UTCDateTime
from order_api.platform.db.pagination import MAX_PAGE_SIZE, Page, PageQuery, fetch_page
from order_api.platform.db.reading import WriteWhileReading
from order_api.platform.db.sessions import (
    Sessions,
    continue_in_turn,
    create_sessions,
    reading_session,
    transaction_connection,
)
from order_api.platform.db.statements import DatabaseReader, Row, Statement, connection_lost

__all__ = [
    "MAX_PAGE_SIZE",
    "Base",
    "DatabaseReader",
    "DatabaseUnreachable",
    "EngineDep",
    "Page",
    "PageQuery",
    "ReaderDep",
    "Row",
    "SessionDep",
    "Sessions",
    "Statement",
    "UTCDateTime",
    "WriteWhileReading",
    "app_engine",
    "connection_lost",
    "continue_in_turn",
    "create_engine",
    "create_sessions",
    "fetch_page",
    "reading_session",
    "request_reader",
    "request_session",
    "transaction_connection",
]
