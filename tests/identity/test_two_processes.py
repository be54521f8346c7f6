"""Identity as an operator runs it: two real API processes on PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import httpx2

from tests.accounts import PASSWORD, bearer
from tests.processes import ADMIN, empty_database, migrate_and_create_admin, production_env
from tests.test_cli import running_server

CONCURRENT_REFRESHES = 20


async def refresh_each_on_its_own_connection(url: str, token: str) -> list[int]:
    """New connections, so the kernel spreads them over both processes' accept queues."""

    async def refresh() -> int:
        async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
            response = await client.post("/api/v1/auth/refresh", json={"refresh_token": token})
            return response.status_code

    return list(await asyncio.gather(*(refresh() for _ in range(CONCURRENT_REFRESHES))))


async def test_tokens_race_and_revocation_across_two_processes(
    tmp_path: Path, postgres_database: str, redis_url: str, redis_prefix: str
) -> None:
    env = production_env(postgres_database, redis_url, redis_prefix)
    migrate_and_create_admin(tmp_path, env)
    try:
        with running_server(tmp_path, "--workers", "2", **env) as server:
            async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
                customer = {"email": "race@example.com", "password": PASSWORD, "full_name": "Race"}
                assert (await http.post("/api/v1/users", json=customer)).status_code == 201
                form = {"username": customer["email"], "password": PASSWORD}
                pair = (await http.post("/api/v1/auth/token", data=form)).json()

                statuses = await refresh_each_on_its_own_connection(
                    server.url, pair["refresh_token"]
                )
                assert Counter(statuses) == {200: 1, 401: CONCURRENT_REFRESHES - 1}

                fresh = (await http.post("/api/v1/auth/token", data=form)).json()
                me = (
                    await http.get("/api/v1/users/me", headers=bearer(fresh["access_token"]))
                ).json()
                admin_form = {"username": ADMIN[0], "password": ADMIN[1]}
                admin = (await http.post("/api/v1/auth/token", data=admin_form)).json()
                deactivated = await http.patch(
                    f"/api/v1/users/{me['id']}",
                    json={"is_active": False},
                    headers=bearer(admin["access_token"]),
                )
                assert deactivated.status_code == 200
                for _ in range(6):  # new connections: both processes must refuse the token
                    async with httpx2.AsyncClient(base_url=server.url) as client:
                        refused = await client.get(
                            "/api/v1/users/me", headers=bearer(fresh["access_token"])
                        )
                        assert refused.status_code == 401
                assert (await http.post("/api/v1/auth/token", data=form)).status_code == 401
            stderr = server.stop()
    finally:
        await empty_database(postgres_database, tmp_path)
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    assert len([event for event in events if event.startswith("Started server process")]) == 2
    assert PASSWORD not in stderr
    assert ADMIN[1] not in stderr
