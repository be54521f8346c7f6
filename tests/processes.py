"""The production topology as real processes: settings for PostgreSQL and Redis, a database."""

from __future__ import annotations

from pathlib import Path

from order_api.platform.db import create_engine
from tests.support import TEST_SECRET_KEY, delete_all_rows, make_settings
from tests.test_cli import run

ADMIN = ("ops@example.com", "an admin passphrase 42")


def production_env(
    postgres_database: str, redis_url: str, redis_prefix: str, **extra: str
) -> dict[str, str]:
    return {
        "DATABASE_URL": postgres_database,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": redis_prefix,
        "SECRET_KEY": TEST_SECRET_KEY,
        **extra,
    }


def migrate_and_create_admin(tmp_path: Path, env: dict[str, str]) -> None:
    """What an operator does once before starting API processes on PostgreSQL."""
    migrated = run(["migrate"], tmp_path, **env)
    assert migrated.returncode == 0, migrated.stderr
    created = run(["create-admin", "--email", ADMIN[0], "--password", ADMIN[1]], tmp_path, **env)
    assert created.returncode == 0, created.stderr


async def empty_database(postgres_database: str, tmp_path: Path) -> None:
    """Delete every row the processes wrote: the suite's other tests share this database."""
    engine = create_engine(make_settings(postgres_database, tmp_path))
    try:
        await delete_all_rows(engine)
    finally:
        await engine.dispose()
