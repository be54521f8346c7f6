"""Alembic environment: our async engine for SQLite or PostgreSQL, or a connection we hand in."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection

from order_api.auth import models as _auth_models  # noqa: F401 - registers the tables
from order_api.config import load_settings
from order_api.jobs import models as _jobs_models  # noqa: F401
from order_api.orders import models as _orders_models  # noqa: F401
from order_api.platform.db import Base, create_engine
from order_api.products import models as _products_models  # noqa: F401
from order_api.users import models as _users_models  # noqa: F401

target_metadata = Base.metadata


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_with_own_engine() -> None:
    engine = create_engine(load_settings())
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")

shared_connection = context.config.attributes.get("connection")
if shared_connection is not None:
    run_migrations(shared_connection)
else:
    asyncio.run(run_with_own_engine())
