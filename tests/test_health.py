"""Liveness never touches a back-end; readiness reports each component within its time bound."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx2
import pytest
from sqlalchemy import make_url

from order_api.health.liveness import LIVENESS_BODY
from order_api.health.router import live
from tests.support import AppFactory, admin_postgres_dsn
from tests.test_errors import assert_problem


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_live_is_ok(client: httpx2.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-request-id"]


async def test_live_answers_head_and_refuses_other_methods(client: httpx2.AsyncClient) -> None:
    head = await client.head("/health/live")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(LIVENESS_BODY))
    assert_problem(await client.post("/health/live"), 405, "method_not_allowed")


async def test_the_edge_answer_is_the_documented_route_s() -> None:
    # The route declares the answer in the schema; the middleware serves it before routing.
    assert (await live()).model_dump_json().encode() == LIVENESS_BODY


@pytest.mark.parametrize("path", ["/health", "/health/ready"])
async def test_ready_reports_the_database(client: httpx2.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["database"]["latency_ms"] >= 0


def unreachable_database_url(backend: str, tmp_path: Path) -> str:
    if backend == "postgresql":
        return f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/nothing"
    blocker = tmp_path / "order_api.sqlite3"
    blocker.mkdir()  # a directory where the database file should be: SQLite cannot open it
    return f"sqlite+aiosqlite:///{blocker}"


async def test_ready_is_503_when_the_database_is_down(
    make_client: AppFactory, backend: str, tmp_path: Path
) -> None:
    client = await make_client(database_url=unreachable_database_url(backend, tmp_path))
    response = await client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down"
    assert body["checks"]["database"] == {
        "status": "down",
        "latency_ms": body["checks"]["database"]["latency_ms"],
        "detail": "unreachable",
    }
    assert (await client.get("/health/live")).status_code == 200
    # Requests that need the database are told to come back, not answered 500.
    for request in (
        client.build_request("GET", "/api/v1/products"),
        client.build_request(
            "POST", "/api/v1/auth/token", data={"username": "a@example.com", "password": "x" * 12}
        ),
    ):
        refused = await client.send(request)
        assert_problem(refused, 503, "service_unavailable")
        assert refused.headers["retry-after"] in {"1", "5"}


@pytest.mark.only_backend("sqlite")
async def test_ready_is_ok_while_another_connection_holds_the_write_lock(
    client: httpx2.AsyncClient, database_url: str
) -> None:
    writer = sqlite3.connect(make_url(database_url).database or "", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        response = await client.get("/health/ready")
    finally:
        writer.close()
    assert response.status_code == 200, response.text


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts and never answers: a hung database, as a client sees it."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in held:
            writer.close()
        server.close()


@pytest.mark.only_backend("postgresql")
async def test_ready_check_is_bounded_when_the_database_hangs(
    make_client: AppFactory, silent_server: int
) -> None:
    client = await make_client(
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{silent_server}/hung",
        health_check_timeout_seconds=0.3,
    )
    response = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["database"]["detail"] == "timed out after 0.3 s"


@pytest.mark.only_backend("postgresql")
async def test_ready_survives_a_database_restart_of_its_connections(
    client: httpx2.AsyncClient, database_url: str
) -> None:
    assert (await client.get("/health/ready")).status_code == 200
    admin = await asyncpg.connect(admin_postgres_dsn())
    try:
        terminated = await admin.fetchval(
            # Waits for each backend to end, as a restart does before the server is back.
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
            "WHERE datname = $1 AND application_name = 'order-api'",
            make_url(database_url).database,
        )
    finally:
        await admin.close()
    assert terminated >= 1
    response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["database"]["status"] == "ok"


async def test_ready_checks_redis_when_it_is_configured(
    make_client: AppFactory, redis_url: str, redis_prefix: str
) -> None:
    client = await make_client(redis_url=redis_url, redis_prefix=redis_prefix)
    response = await client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "redis": "ok",
    }


async def test_ready_is_degraded_not_down_when_redis_is_down(make_client: AppFactory) -> None:
    client = await make_client(
        redis_url=f"redis://127.0.0.1:{closed_port()}/0", redis_timeout_seconds=0.3
    )
    response = await client.get("/health/ready")
    # Every process would leave the load balancer at once for a Redis outage: SPEC §5.7.
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "down"


async def test_ready_check_is_bounded_when_redis_hangs(
    make_client: AppFactory, silent_server: int
) -> None:
    client = await make_client(
        redis_url=f"redis://127.0.0.1:{silent_server}/0",
        redis_timeout_seconds=0.3,
        health_check_timeout_seconds=0.3,
    )
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["checks"]["redis"] == {
        "status": "down",
        "latency_ms": response.json()["checks"]["redis"]["latency_ms"],
        "detail": "timed out after 0.3 s",
    }
