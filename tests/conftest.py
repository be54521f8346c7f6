"""One fixture set for both back-ends: a throw-away SQLite file and a throw-away PostgreSQL DB.

Under CI=true both are required; locally the PostgreSQL runs are skipped when no server answers.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI

from order_api import migrations
from order_api.app import create_app
from order_api.config import Settings
from order_api.platform.db import create_engine
from tests.accounts import Shop, ShopFactory
from tests.smtp_server import SmtpServer
from tests.streams import WAIT_SECONDS, LiveShop, LiveShopFactory, served
from tests.support import (
    BACKENDS,
    IN_CI,
    TEST_REDIS_URL,
    AppBuilder,
    AppFactory,
    create_database,
    delete_all_rows,
    delete_redis_keys,
    drop_database,
    make_settings,
    postgres_reachable,
    postgres_too_busy,
    redis_reachable,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "only_backend(name): run the test on that back-end only (others deselected)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A back-end-specific test is not collected for the other back-end, rather than skipped."""
    deselected = []
    for item in items:
        marker = item.get_closest_marker("only_backend")
        callspec = getattr(item, "callspec", None)
        if marker and callspec and callspec.params.get("backend") != marker.args[0]:
            deselected.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


@pytest.fixture(scope="session")
async def postgres_database() -> AsyncIterator[str]:
    """A database of our own for the whole run, dropped at the end; we never touch another."""
    problem = await postgres_reachable() or await postgres_too_busy()
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true requires PostgreSQL: {problem}")
        pytest.skip(problem)
    name = f"order_api_test_{secrets.token_hex(6)}"
    url = await create_database(name)
    try:
        yield url
    finally:
        await drop_database(name)


@pytest.fixture(scope="session")
def sqlite_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sqlite") / "order_api.sqlite3"


@pytest.fixture(params=BACKENDS, scope="session")
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(backend: str, request: pytest.FixtureRequest, sqlite_path: Path) -> str:
    if backend == "postgresql":
        return str(request.getfixturevalue("postgres_database"))
    return f"sqlite+aiosqlite:///{sqlite_path}"


@pytest.fixture(scope="session")
async def migrated_database(database_url: str) -> str:
    """The schema comes from the migrations, exactly as in production."""
    engine = create_engine(make_settings(database_url, Path(".")))
    try:
        await migrations.upgrade(engine)
    finally:
        await engine.dispose()
    return database_url


@pytest.fixture
async def make_app(migrated_database: str, tmp_path: Path) -> AsyncIterator[AppBuilder]:
    """Build `create_app(settings)` with overrides and run its lifespan until the test ends."""
    async with AsyncExitStack() as stack:

        async def build(**overrides: Any) -> FastAPI:
            url = overrides.pop("database_url", migrated_database)
            app = create_app(make_settings(url, tmp_path, **overrides))
            await stack.enter_async_context(app.router.lifespan_context(app))
            if url == migrated_database:
                stack.push_async_callback(delete_all_rows, app.state.engine)
            return app

        yield build


@pytest.fixture
async def make_shop(make_app: AppBuilder) -> AsyncIterator[ShopFactory]:
    """Like make_app, handing back the app with a client: several shops share one database."""
    async with AsyncExitStack() as stack:

        async def build(**overrides: Any) -> Shop:
            app = await make_app(**overrides)
            transport = httpx2.ASGITransport(app=app)
            client = httpx2.AsyncClient(transport=transport, base_url="http://testserver")
            return Shop(app, await stack.enter_async_context(client))

        yield build


@pytest.fixture
async def make_live_shop(make_app: AppBuilder) -> AsyncIterator[LiveShopFactory]:
    """Like make_shop, but served by a real uvicorn on a free port: for WebSockets."""
    async with AsyncExitStack() as stack:

        async def build(send_buffer_bytes: int | None = None, **overrides: Any) -> LiveShop:
            app = await make_app(**overrides)
            address, server = await stack.enter_async_context(served(app, send_buffer_bytes))
            client = httpx2.AsyncClient(base_url=f"http://{address}", timeout=WAIT_SECONDS)
            await stack.enter_async_context(client)
            return LiveShop(app, client, ws_base=f"ws://{address}", server=server)

        yield build


@pytest.fixture
async def live_shop(make_live_shop: LiveShopFactory) -> LiveShop:
    return await make_live_shop()


@pytest.fixture
async def make_client(make_shop: ShopFactory) -> AppFactory:
    """Like make_app, handing back an httpx client over ASGI."""

    async def build(**overrides: Any) -> httpx2.AsyncClient:
        return (await make_shop(**overrides)).client

    return build


@pytest.fixture
async def shop(make_shop: ShopFactory) -> Shop:
    return await make_shop()


@pytest.fixture(scope="session")
async def redis_url() -> str:
    problem = await redis_reachable()
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true requires Redis: {problem}")
        pytest.skip(problem)
    return TEST_REDIS_URL


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """Keys of this test's own, deleted afterwards: the suite never touches anyone else's keys."""
    prefix = f"order-api-test-{secrets.token_hex(6)}"
    yield prefix
    await delete_redis_keys(redis_url, prefix)


@pytest.fixture
async def client(make_client: AppFactory) -> httpx2.AsyncClient:
    return await make_client()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No order-api setting leaks in from the developer's shell or a `.env` file."""
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server of the test's own, on a free port."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()
