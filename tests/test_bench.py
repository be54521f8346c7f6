"""`python -m bench --smoke`: the whole harness end to end, against PostgreSQL and Redis.

It runs once (not once per back-end), with its servers outside coverage, and checks the report,
the chart and that the bench leaves no database and no Redis key behind. No figure is asserted
beyond "measured": the machine is shared, so durations and ratios are not the test's business.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio

from tests.contract.test_schema_fuzzing import without_coverage
from tests.support import (
    IN_CI,
    TEST_REDIS_URL,
    admin_postgres_dsn,
    postgres_reachable,
    redis_reachable,
)

pytestmark = [pytest.mark.only_backend("postgresql"), pytest.mark.timeout(300)]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SMOKE_WAIT_SECONDS = 240
SERVICE_ENDPOINTS = (
    "GET /health/live",
    "GET /api/v1/products/{id}",
    "GET /api/v1/products?page_size=20",
    "GET /api/v1/products/popular",
    "GET /api/v1/orders?page_size=20",
    "POST /api/v1/orders",
)
SCENARIOS = (
    "baseline: plain FastAPI GET /health/live",
    "baseline: FastAPI + asyncpg GET /api/v1/products/{id}",
    "baseline: FastAPI + asyncpg POST /api/v1/orders",
    *(f"order-api: {endpoint}" for endpoint in SERVICE_ENDPOINTS),
    "order-api, middleware pair: GET /api/v1/products/{id}",
    "order-api without middleware: GET /api/v1/products/{id}",
    "embedded SQLite: GET /api/v1/products/{id}",
    "embedded SQLite: POST /api/v1/orders",
    *(f"order-api, 2 processes: {endpoint}" for endpoint in SERVICE_ENDPOINTS),
    "order-api: GET /api/v1/products?page_size=1",
    "order-api: GET /api/v1/products?page_size=100",
    "order-api: GET /api/v1/orders?page_size=1",
    "order-api: GET /api/v1/orders?page_size=100",
    "order-api: POST /api/v1/orders (5 lines)",
    "order-api: POST /api/v1/orders (20 lines)",
)
GOALS = (
    "GET /api/v1/products/{id} vs bare FastAPI + asyncpg",
    "POST /api/v1/orders vs bare order",
    "GET /health/live vs plain FastAPI JSON",
    "middleware stack cost on GET /api/v1/products/{id}",
)


@pytest.fixture
async def postgres_and_redis(backend: str) -> None:
    """PostgreSQL and Redis, as the rest of the suite needs them: required under CI=true."""
    for problem in (await postgres_reachable(), await redis_reachable()):
        if problem:
            if IN_CI:
                pytest.fail(f"CI=true requires PostgreSQL and Redis: {problem}")
            pytest.skip(problem)


def run_smoke(output_dir: Path) -> tuple[int, subprocess.CompletedProcess[str]]:
    """The bench as `make bench` runs it, with its pid (its resources are named after it)."""
    environ = without_coverage(
        {
            **os.environ,
            "BENCH_POSTGRES_URL": admin_postgres_dsn(),
            "BENCH_REDIS_URL": TEST_REDIS_URL,
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", "--smoke", "--output-dir", str(output_dir)],
        cwd=PROJECT_ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=SMOKE_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: the bench still stops its servers and drops its database.
        process.terminate()
        stdout, stderr = process.communicate()
    finished = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return process.pid, finished


def table_cell(markdown: str, first_cell: str, column: int) -> str:
    row = re.search(rf"^\| {re.escape(first_cell)} \|(.*)$", markdown, re.MULTILINE)
    assert row is not None, f"no row for {first_cell!r}"
    return row.group(1).split("|")[column - 1].strip()


async def database_exists(name: str) -> bool:
    connection = await asyncpg.connect(admin_postgres_dsn())
    try:
        found = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
    finally:
        await connection.close()
    return found is not None


async def redis_keys(prefix: str) -> list[bytes]:
    client = redis.asyncio.Redis.from_url(TEST_REDIS_URL)
    try:
        return [key async for key in client.scan_iter(match=f"{prefix}*")]
    finally:
        await client.aclose()


@pytest.mark.usefixtures("postgres_and_redis")
async def test_smoke_bench_reports_every_scenario_and_cleans_up(tmp_path: Path) -> None:
    pid, finished = await asyncio.to_thread(run_smoke, tmp_path)

    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    markdown = (tmp_path / "benchmarks.md").read_text()
    for scenario in SCENARIOS:
        requests_per_second = table_cell(markdown, scenario, 1)
        assert float(requests_per_second.replace(",", "")) > 0, scenario
    for goal in GOALS:
        assert table_cell(markdown, goal, 2).lower() in {"met", "not met"}, goal
    assert "](benchmarks.png)" in markdown
    assert (tmp_path / "benchmarks.png").read_bytes().startswith(PNG_SIGNATURE)
    assert not await database_exists(f"order_api_bench_{pid}")
    assert await redis_keys(f"order-api-bench-{pid}") == []
