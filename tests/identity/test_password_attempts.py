"""Password checks outside login (PATCH /users/me) spend the login budget, and one caller's
checks cannot crowd everyone else's out of the hashing threads."""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import statistics
import time
from datetime import UTC, datetime
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

import httpx2
import pytest

from order_api.platform.errors import TooManyRequests
from order_api.platform.security import Passwords, Tokens
from order_api.users.models import User
from tests.accounts import PASSWORD, Shop, ShopFactory, bearer, new_email
from tests.identity.test_login import password_checks
from tests.operations.test_metrics import client_from
from tests.processes import empty_database
from tests.support import TEST_SECRET_KEY
from tests.test_cli import run, running_server
from tests.test_errors import assert_problem

ME = "/api/v1/users/me"
TOKEN = "/api/v1/auth/token"
NEW_PASSWORD = "a different passphrase, long enough"
WRONG = "not the password at all"
PEER_1 = ("192.0.2.1", 5000)
PEER_2 = ("192.0.2.2", 5000)
FLOOD_ADDRESS = "198.51.100.7"
FLOOD_WORKERS = 150
# Limits far above what the fairness test sends: only the hashing gate may refuse its flood.
RAISED_LIMITS = {
    f"RATE_LIMIT_{name}": "1000000/minute"
    for name in ("DEFAULT", "LOGIN_PER_IP", "LOGIN_PER_ACCOUNT", "REGISTRATION_PER_IP")
}


async def check_current_password(
    client: httpx2.AsyncClient, access_token: str, current_password: str
) -> httpx2.Response:
    body = {"password": NEW_PASSWORD, "current_password": current_password}
    return await client.patch(ME, json=body, headers=bearer(access_token))


async def customer(shop: Shop) -> tuple[User, str]:
    """A customer and an access token issued without a login, which would spend an attempt."""
    user = await shop.create_user()
    tokens: Tokens = shop.app.state.tokens
    return user, tokens.issue_access(user.id, datetime.now(UTC)).token


async def log_in(client: httpx2.AsyncClient, email: str, password: str) -> httpx2.Response:
    return await client.post(TOKEN, data={"username": email, "password": password})


def assert_rate_limited(response: httpx2.Response) -> None:
    assert_problem(response, 429, "rate_limited")
    assert int(response.headers["retry-after"]) >= 1


def hashes_so_far() -> float:
    return password_checks("account") + password_checks("dummy")


async def test_current_password_guesses_stop_at_the_account_login_limit(
    make_shop: ShopFactory,
) -> None:
    shop = await make_shop(rate_limit_enabled=True)  # the default: 10 per account a quarter hour
    user, token = await customer(shop)
    for _ in range(10):
        response = await check_current_password(shop.client, token, WRONG)
        assert_problem(response, 403, "invalid_current_password")
    before = hashes_so_far()
    # Even the right password: refused before any hash is computed.
    assert_rate_limited(await check_current_password(shop.client, token, PASSWORD))
    assert hashes_so_far() == before
    # The account's logins are out of attempts too, from any address.
    async with client_from(shop, PEER_2) as elsewhere:
        assert_rate_limited(await log_in(elsewhere, user.email, PASSWORD))
    assert (await shop.me(token)).status_code == 200  # the password did not change


async def test_logins_and_current_password_checks_spend_one_budget(
    make_shop: ShopFactory,
) -> None:
    shop = await make_shop(rate_limit_enabled=True, rate_limit_login_per_account="10/15minutes")
    user, token = await customer(shop)
    async with client_from(shop, PEER_1) as first, client_from(shop, PEER_2) as second:
        for _ in range(6):
            assert (await log_in(first, user.email, WRONG)).status_code == 401
        for _ in range(4):
            response = await check_current_password(second, token, WRONG)
            assert_problem(response, 403, "invalid_current_password")
        assert_rate_limited(await check_current_password(second, token, PASSWORD))
        assert_rate_limited(await log_in(first, user.email, PASSWORD))


async def test_current_password_checks_count_against_the_address_limit(
    make_shop: ShopFactory,
) -> None:
    shop = await make_shop(rate_limit_enabled=True, rate_limit_login_per_ip="5/minute")
    (user, token), other = await customer(shop), await shop.create_user()
    async with client_from(shop, PEER_1) as client:
        for _ in range(3):
            response = await check_current_password(client, token, WRONG)
            assert_problem(response, 403, "invalid_current_password")
        for _ in range(2):
            assert (await log_in(client, other.email, WRONG)).status_code == 401
        # The account has attempts left; the address has not.
        assert_rate_limited(await check_current_password(client, token, PASSWORD))
        assert_rate_limited(await log_in(client, other.email, PASSWORD))
    async with client_from(shop, PEER_2) as elsewhere:
        response = await check_current_password(elsewhere, token, PASSWORD)
        assert response.status_code == 200, response.text
    assert (await log_in(shop.client, user.email, NEW_PASSWORD)).status_code == 200


async def test_one_callers_checks_past_a_few_waiting_are_refused_before_a_hash() -> None:
    passwords = Passwords(256, 1)
    stored = await passwords.hash(PASSWORD)
    before = hashes_so_far()
    # Every check reaches the gate before the first hash can finish: the counts are exact.
    outcomes = await asyncio.gather(
        *(passwords.verify(WRONG, stored, caller="192.0.2.1") for _ in range(30)),
        passwords.verify(PASSWORD, stored, caller="192.0.2.2"),
        return_exceptions=True,
    )
    refused = [outcome for outcome in outcomes if isinstance(outcome, TooManyRequests)]
    answered = [outcome for outcome in outcomes if isinstance(outcome, tuple)]
    assert len(refused) + len(answered) == len(outcomes)
    admitted = Passwords.CHECKS_WAITING_PER_CALLER + 1
    assert len(answered) == admitted + 1
    assert answered[-1] == (True, None)  # the other caller went through
    assert hashes_so_far() - before == admitted + 1
    assert all(error.headers == {"Retry-After": "1"} for error in refused)
    assert passwords.callers_in_line == 0  # idle callers are forgotten
    # Without a caller (the command line) nothing is refused.
    outcomes = await asyncio.gather(*(passwords.verify(WRONG, stored) for _ in range(30)))
    assert outcomes == [(False, None)] * 30


async def median_login_seconds(
    client: httpx2.AsyncClient, email: str, count: int
) -> tuple[float, list[float]]:
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        response = await log_in(client, email, PASSWORD)
        durations.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
    return statistics.median(durations), durations


async def flood_checks(
    client: httpx2.AsyncClient,
    access_token: str,
    stop: Event,
    statuses: list[int],
    flooding: Event,
) -> None:
    """One of the flood's workers: wrong current_password checks back to back, waiting only
    what a 429 asks (with jitter, as clients retry), so the flood is one of hashing work."""
    while not stop.is_set():
        response = await check_current_password(client, access_token, WRONG)
        statuses.append(response.status_code)
        if len(statuses) >= FLOOD_WORKERS:
            flooding.set()  # every worker has had an answer: the flood is at its height
        if response.status_code == 429:
            await asyncio.sleep(float(response.headers["retry-after"]) + random.random())


def flood_from_its_own_process(
    url: str, access_token: str, stop: Event, flooding: Event, answers: Queue[list[int]]
) -> None:
    """150 workers' checks, from a process of their own: sharing the test's event loop, they
    would slow the bystander's client, and the measure would not be the server's."""

    async def flood() -> list[int]:
        connections = httpx2.Limits(max_connections=200, max_keepalive_connections=200)
        headers = {"X-Forwarded-For": FLOOD_ADDRESS}
        statuses: list[int] = []
        async with httpx2.AsyncClient(
            base_url=url, timeout=60, limits=connections, headers=headers
        ) as client:
            workers = [
                flood_checks(client, access_token, stop, statuses, flooding)
                for _ in range(FLOOD_WORKERS)
            ]
            await asyncio.gather(*workers)
        return statuses

    answers.put(asyncio.run(flood()))


async def test_a_flood_of_password_checks_leaves_others_logins_their_latency(
    tmp_path: Path, postgres_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real server, so the flood's clients do not share its event loop; on PostgreSQL, as
    under a flood of any requests SQLite's one write lock queues everyone at the database."""
    # The default Argon2 cost, production's: hashing is what a flood of checks amplifies.
    env = {
        "DATABASE_URL": postgres_database,
        "SECRET_KEY": TEST_SECRET_KEY,
        "TRUSTED_PROXIES": "127.0.0.1/32",
        **RAISED_LIMITS,
    }
    migrated = run(["migrate"], tmp_path, **env)
    assert migrated.returncode == 0, migrated.stderr
    try:
        with running_server(tmp_path, **env) as server:
            flood, own = (
                httpx2.AsyncClient(
                    base_url=server.url, timeout=60, headers={"X-Forwarded-For": address}
                )
                for address in (FLOOD_ADDRESS, "203.0.113.9")
            )
            async with flood, own:
                alone, flooded, statuses = await bystander_latency(server.url, flood, own)
            server.stop()
    finally:
        await empty_database(postgres_database, tmp_path)
    ratio = flooded[0] / alone[0]
    with capsys.disabled():
        print(
            f"\nbystander login median alone {alone[0] * 1000:.0f} ms, under the flood "
            f"{flooded[0] * 1000:.0f} ms: x{ratio:.2f}; flood answers "
            f"{ {status: statuses.count(status) for status in set(statuses)} }"
            f"\n  alone {[round(d * 1000) for d in alone[1]]}"
            f"\n  flooded {[round(d * 1000) for d in flooded[1]]}"
        )
    assert ratio < 25, (alone, flooded)


async def bystander_latency(
    url: str, flood: httpx2.AsyncClient, own: httpx2.AsyncClient
) -> tuple[tuple[float, list[float]], tuple[float, list[float]], list[int]]:
    """The bystander's login latency alone, then under 150 workers' checks, and their answers."""
    accounts = []
    for client in (flood, own):
        email = new_email()
        body = {"email": email, "password": PASSWORD, "full_name": "Ada"}
        assert (await client.post("/api/v1/users", json=body)).status_code == 201
        accounts.append(email)
    flood_email, bystander_email = accounts
    flood_token = (await log_in(flood, flood_email, PASSWORD)).json()["access_token"]
    await log_in(own, bystander_email, PASSWORD)  # warm-up
    alone = await median_login_seconds(own, bystander_email, 9)
    spawning = multiprocessing.get_context("spawn")
    stop, flooding, answers = spawning.Event(), spawning.Event(), spawning.Queue()
    flooder = spawning.Process(
        target=flood_from_its_own_process, args=(url, flood_token, stop, flooding, answers)
    )
    flooder.start()
    try:
        assert await asyncio.to_thread(flooding.wait, 60), "the flood never got going"
        flooded = await median_login_seconds(own, bystander_email, 9)
    finally:
        stop.set()
    statuses: list[int] = await asyncio.to_thread(answers.get, timeout=60)
    await asyncio.to_thread(flooder.join, 60)
    return alone, flooded, statuses
