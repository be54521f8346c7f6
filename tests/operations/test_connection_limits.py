"""A PostgreSQL server that refuses connections ("too many clients") is named as the cause: the API
answers a 503 problem saying so, and a command's one line says so, instead of a vague timeout."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import make_url

from tests.accounts import ShopFactory
from tests.catalogue import PRODUCTS
from tests.support import postgres_too_busy, run_as_admin
from tests.test_cli import run
from tests.test_errors import assert_problem

pytestmark = pytest.mark.only_backend("postgresql")


@pytest.fixture
async def refused_url(migrated_database: str) -> AsyncIterator[str]:
    """The test database, through a role PostgreSQL allows no connection at all (SQLSTATE 53300,
    as when max_connections is reached: a full shared server is not ours to fill)."""
    role = f"order_api_test_full_{secrets.token_hex(4)}"
    await run_as_admin(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
    try:
        yield make_url(migrated_database).set(username=role).render_as_string(False)
    finally:
        await run_as_admin(f'DROP ROLE IF EXISTS "{role}"')


async def test_the_api_names_a_server_out_of_connections(
    make_shop: ShopFactory, refused_url: str
) -> None:
    shop = await make_shop(database_url=refused_url)
    refused = await shop.client.get(PRODUCTS)
    problem = assert_problem(refused, 503, "service_unavailable")
    assert "too many clients" in problem["detail"]
    assert refused.headers["retry-after"] == "1"


def test_a_command_names_a_server_out_of_connections(refused_url: str, tmp_path: Path) -> None:
    plain_url = refused_url.replace("+asyncpg", "")
    created = run(
        ["create-admin", "--email", "ops@example.com", "--password", "an admin passphrase 42"],
        tmp_path,
        DATABASE_URL=plain_url,
        SECRET_KEY="k" * 48,
    )
    assert created.returncode == 1
    lines = created.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "too many connections" in lines[0]


async def test_a_run_that_would_not_fit_says_so_before_it_starts(migrated_database: str) -> None:
    """The suite's own check (tests/conftest.py): this server has room for this run, and not for
    one that needs more connections than it has, which is told with the counts."""
    assert await postgres_too_busy() is None
    refusal = await postgres_too_busy(needed=100_000)
    assert refusal is not None
    assert "connections free" in refusal
    assert "this run needs up to 100000" in refusal
