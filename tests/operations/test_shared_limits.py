"""Rate limits as an operator runs them: two `serve` processes on PostgreSQL and one Redis, the
attempts alternating between them and counted once (reliability rows API-11, HTTP-03)."""

from __future__ import annotations

from pathlib import Path

import httpx2

from tests.accounts import PASSWORD
from tests.processes import empty_database, migrate_and_create_admin, production_env
from tests.test_cli import running_server


async def attempt(url: str, email: str, headers: dict[str, str] | None = None) -> int:
    """A wrong password, from 127.0.0.1 like every attempt here."""
    async with httpx2.AsyncClient(base_url=url, timeout=30) as client:
        form = {"username": email, "password": "wrong guess"}
        response = await client.post("/api/v1/auth/token", data=form, headers=headers)
        if response.status_code == 429:
            assert response.headers["content-type"] == "application/problem+json"
            assert int(response.headers["retry-after"]) >= 1
        return response.status_code


async def test_two_processes_count_login_attempts_once(
    tmp_path: Path, postgres_database: str, redis_url: str, redis_prefix: str
) -> None:
    env = production_env(
        postgres_database,
        redis_url,
        redis_prefix,
        RATE_LIMIT_LOGIN_PER_ACCOUNT="6/minute",
        RATE_LIMIT_LOGIN_PER_IP="10/minute",
    )
    migrate_and_create_admin(tmp_path, env)
    try:
        with (
            running_server(tmp_path, **env) as first,
            running_server(tmp_path, **env) as second,
        ):
            urls = [first.url, second.url]
            body = {"email": "victim@example.com", "password": PASSWORD, "full_name": "Victim"}
            assert httpx2.post(f"{first.url}/api/v1/users", json=body).status_code == 201
            per_account = [await attempt(urls[n % 2], body["email"]) for n in range(8)]
            # A new X-Forwarded-For each time: uvicorn's own proxy handling is off and no proxy
            # is trusted, so the header changes nothing and the address limit trips.
            spoofed = []
            for n in range(4):
                headers = {"X-Forwarded-For": f"6.6.6.{n}"}
                spoofed.append(await attempt(urls[n % 2], f"spray-{n}@example.com", headers))
            first.stop()
            second.stop()
    finally:
        await empty_database(postgres_database, tmp_path)
    assert per_account == [401] * 6 + [429] * 2
    # 8 + 2 attempts fill the address's 10; the rest are refused whatever the header says.
    assert spoofed == [401, 401, 429, 429]
