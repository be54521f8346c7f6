"""Schemathesis against a live production-mode `order-api serve`, as each kind of caller.

Every check runs but the few `schemathesis.toml` at the project root switches off, each with its
reason: no 5xx, no answer outside its declared status, content type or schema,
405 with an exact `Allow` for undeclared methods, 401 without credentials, and the stateful
phase following the schema's links (create a product, order it, move the order).
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from order_api.app import passwords_from
from order_api.platform.db import create_engine, create_sessions
from order_api.users import service as users_service
from order_api.users.models import Role
from order_api.users.schemas import UserCreate
from tests.accounts import PASSWORD, new_email
from tests.authz_matrix import Caller
from tests.contract.schemathesis_hooks import OWN_USER_ID
from tests.processes import empty_database
from tests.support import TEST_SECRET_KEY, delete_redis_keys, make_settings
from tests.test_cli import RunningServer, command_env, killed_at_exit, start_server_with

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = str(Path(sys.executable).parent / "st")
SEED = 20261124
# Per operation and phase: the six runs take about three minutes on this machine.
MAX_EXAMPLES = 15
# Production settings, but limits no fuzzer reaches (tests/edge/ proves the 429s), and the
# cheapest Argon2 profile production accepts (OWASP's 19 MiB line).
FUZZING_ENV = {
    "ENVIRONMENT": "production",
    "SECRET_KEY": TEST_SECRET_KEY,
    "RATE_LIMIT_DEFAULT": "1000000/minute",
    "RATE_LIMIT_LOGIN_PER_IP": "1000000/minute",
    "RATE_LIMIT_LOGIN_PER_ACCOUNT": "1000000/minute",
    "RATE_LIMIT_REGISTRATION_PER_IP": "1000000/minute",
    "RATE_LIMIT_ORDERS_PER_USER": "1000000/minute",
    "PASSWORD_HASH_MEMORY_KIB": "19456",
    "PASSWORD_HASH_ITERATIONS": "2",
}


@dataclass
class LiveService:
    server: RunningServer
    database_url: str
    redis_url: str | None
    redis_prefix: str


@pytest.fixture(scope="module")
def live_service(
    backend: str,
    migrated_database: str,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[LiveService]:
    """One production-mode process on the suite's database, and on Redis beside PostgreSQL."""
    env = {**FUZZING_ENV, "DATABASE_URL": migrated_database}
    redis_url, redis_prefix = None, f"order-api-test-{secrets.token_hex(6)}"
    if backend == "postgresql":
        redis_url = str(request.getfixturevalue("redis_url"))
        env |= {"REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix}
    tmp_path = tmp_path_factory.mktemp("fuzzed")
    # Out of coverage: the suite's other tests measure these paths, and tracing slows it down.
    environ = without_coverage(command_env(tmp_path, **env))
    with killed_at_exit(start_server_with(tmp_path, [], environ)) as server:
        assert server.process.poll() is None, "".join(server.stderr_lines)
        yield LiveService(server, migrated_database, redis_url, redis_prefix)


def without_coverage(environ: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in environ.items() if "COVERAGE" not in name}


async def log_in_as_new(service: LiveService, role: Role, tmp_path: Path) -> tuple[str, str]:
    """A new account of that role, written by the users service on a connection closed before
    the run (no lock of ours can stall the server), then logged in over HTTP: (id, token)."""
    settings = make_settings(service.database_url, tmp_path)
    engine = create_engine(settings)
    data = UserCreate(email=new_email(role.value), password=PASSWORD, full_name="Fuzzer")
    try:
        async with create_sessions(engine, settings)() as session:
            user = await users_service.register_user(
                session, passwords_from(settings), data, role=role
            )
            await session.commit()
    finally:
        await engine.dispose()
    form = {"username": data.email, "password": PASSWORD}
    response = httpx2.post(f"{service.server.url}/api/v1/auth/token", data=form, timeout=30)
    assert response.status_code == 200, response.text
    return str(user.id), response.json()["access_token"]


def run_schemathesis(
    url: str, account: tuple[str, str] | None, report_dir: Path
) -> subprocess.CompletedProcess[str]:
    """`st run` with the project's settings; `account` is the caller's (user id, access token)."""
    env = without_coverage(os.environ)
    options = ["--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES)]
    options += ["--generation-database", "none"]
    options += ["--report", "junit", "--report-dir", str(report_dir)]
    if account is not None:
        user_id, token = account
        env[OWN_USER_ID] = user_id
        options += ["--header", f"Authorization: Bearer {token}"]
        # Logging out everywhere would revoke the very token the rest of the run uses.
        options += ["--exclude-operation-id", "log_out_everywhere"]
    config = ["--no-color", "--config-file", str(PROJECT_ROOT / "schemathesis.toml")]
    return subprocess.run(
        [SCHEMATHESIS, *config, "run", f"{url}/api/openapi.json", *options],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def failures_of(output: str) -> str:
    """The part of the report that says what failed and how to replay it."""
    start = output.find("= FAILURES")
    return output[start:] if start >= 0 else output[-6000:]


def links_covered(output: str) -> int:
    found = re.search(r"API Links:\s+(\d+) covered", output)
    assert found, output[-3000:]
    return int(found.group(1))


# Every caller on the production topology; on the embedded default the two ends of the range
# (a 30 s run each, most of it Schemathesis's coverage phase, keeps the suite inside its budget).
CALLERS = [
    Caller.ANONYMOUS,
    pytest.param(Caller.CUSTOMER, marks=pytest.mark.only_backend("postgresql")),
    pytest.param(Caller.STAFF, marks=pytest.mark.only_backend("postgresql")),
    Caller.ADMIN,
]


@pytest.mark.parametrize("caller", CALLERS, ids=str)
async def test_the_live_schema_holds_under_fuzzing(
    live_service: LiveService, caller: Caller, tmp_path: Path
) -> None:
    try:
        account = None
        if caller.role is not None:
            account = await log_in_as_new(live_service, caller.role, tmp_path)
        result = run_schemathesis(live_service.server.url, account, tmp_path)
    finally:
        # Each caller's run starts from an empty shop; the suite's other tests share it too.
        await empty_database(live_service.database_url, tmp_path)
        if live_service.redis_url:
            await delete_redis_keys(live_service.redis_url, live_service.redis_prefix)
    assert result.returncode == 0, failures_of(result.stdout + result.stderr)
    assert f"Seed: {SEED}" in result.stdout
    if caller in (Caller.STAFF, Caller.ADMIN):
        # Their runs create products and orders, so the stateful phase follows the links (6 to 11
        # of them in runs here; half of the fewest leaves room for the server's varying answers).
        assert links_covered(result.stdout) >= 3, result.stdout
