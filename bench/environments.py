"""The environment of every server: production settings, limits on but never reached."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from bench.baselines.database import DSN_VARIABLE, POOL_SIZE_VARIABLE
from order_api.config import Settings

REPOSITORY = Path(__file__).resolve().parents[1]
RATE_LIMIT_SETTINGS = (
    "RATE_LIMIT_DEFAULT",
    "RATE_LIMIT_LOGIN_PER_IP",
    "RATE_LIMIT_LOGIN_PER_ACCOUNT",
    "RATE_LIMIT_REGISTRATION_PER_IP",
    "RATE_LIMIT_ORDERS_PER_USER",
)
# Checked on every request like any limit, but far above what one machine can send.
UNREACHED_RATE = "1000000000/minute"
# The longest order-api accepts: the tokens outlive any bench run.
ACCESS_LIFETIME_MINUTES = "1440"
ORDER_API = str(Path(sys.executable).parent / "order-api")


def inherited() -> dict[str, str]:
    """This process's environment without any order-api setting (a developer's shell, CI)."""
    settings = {name.upper() for name in Settings.model_fields}
    environment = {name: value for name, value in os.environ.items() if name not in settings}
    # The servers import bench.* (baselines, the bare-stack app) from the repository.
    environment["PYTHONPATH"] = str(REPOSITORY)
    return environment


def production(secret_key: str, data_dir: Path, pool_size: int) -> dict[str, str]:
    return {
        **inherited(),
        "ENVIRONMENT": "production",
        "DB_POOL_SIZE": str(pool_size),
        "SECRET_KEY": secret_key,
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "INFO",
        "ACCESS_TOKEN_EXPIRE_MINUTES": ACCESS_LIFETIME_MINUTES,
        "RATE_LIMIT_ENABLED": "true",
        **dict.fromkeys(RATE_LIMIT_SETTINGS, UNREACHED_RATE),
        # No worker runs, so no job finishes: with the longest lease the relay hands each outbox
        # row to the queue once (as with a worker), not again every ten leases during the run.
        "JOB_LEASE_SECONDS": "3600",
    }


def new_secret_key() -> str:
    return secrets.token_urlsafe(48)


def with_postgres_and_redis(
    environment: dict[str, str], database_url: str, redis_url: str, redis_prefix: str
) -> dict[str, str]:
    return {
        **environment,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": redis_prefix,
    }


def for_baseline(environment: dict[str, str], database_url: str) -> dict[str, str]:
    # The same pool size as order-api's processes, read from the setting they are given.
    return {
        **environment,
        DSN_VARIABLE: database_url,
        POOL_SIZE_VARIABLE: environment["DB_POOL_SIZE"],
    }
