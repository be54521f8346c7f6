"""Login: one answer for every failure, one Argon2 run for every attempt, hashes kept current."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from order_api.users.models import User
from tests.accounts import PASSWORD, Shop, ShopFactory

TOKEN = "/api/v1/auth/token"
OWASP_HASH_PREFIX = "$argon2id$v=19$m=19456,t=2,p=1$"


def password_checks(against: str) -> float:
    value = REGISTRY.get_sample_value("order_api_password_checks_total", {"against": against})
    return value or 0.0


def comparable(response: httpx2.Response) -> tuple[int, dict[str, Any], list[str]]:
    """What a client can compare between two failures: all but the request id."""
    body = response.json()
    body.pop("request_id")
    header_names = sorted(name for name in response.headers if name != "x-request-id")
    return response.status_code, body, header_names


async def stored_hash(shop: Shop, email: str) -> str:
    async with shop.app.state.sessionmaker() as session:
        query = select(User.hashed_password).where(User.email == email)
        hashed: str | None = await session.scalar(query)
    assert hashed is not None
    return hashed


async def test_a_login_returns_a_bearer_pair_that_is_never_cached(shop: Shop) -> None:
    user = await shop.create_user()
    response = await shop.log_in(user.email)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert set(response.json()) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert response.json()["token_type"] == "bearer"


async def test_every_login_failure_looks_the_same(shop: Shop) -> None:
    known = await shop.create_user()
    deactivated = await shop.create_user()
    async with shop.app.state.sessionmaker() as session:
        row = await session.get(User, deactivated.id)
        assert row is not None
        row.is_active = False
        await session.commit()
    failures = [
        await shop.log_in("nobody@example.com", "a wrong password"),
        await shop.log_in(known.email, "a wrong password"),
        await shop.log_in(known.email.upper(), "a wrong password"),
        await shop.log_in(deactivated.email, PASSWORD),
        await shop.log_in("not an e-mail address", "a wrong password"),
    ]
    first = comparable(failures[0])
    assert first[0] == 401
    assert first[1]["code"] == "invalid_credentials"
    assert all(comparable(failure) == first for failure in failures[1:])
    assert len({len(failure.content) for failure in failures}) == 1


async def test_an_unknown_email_costs_one_argon2_run_like_a_wrong_password(shop: Shop) -> None:
    # Equal work is what makes equal time: the dummy hash stands in for the missing account.
    known = await shop.create_user()
    dummy, account = password_checks("dummy"), password_checks("account")
    await shop.log_in("nobody@example.com", "a wrong password")
    await shop.log_in("\u0000@example.com", "a wrong password")
    assert (password_checks("dummy"), password_checks("account")) == (dummy + 2, account)
    await shop.log_in(known.email, "a wrong password")
    assert (password_checks("dummy"), password_checks("account")) == (dummy + 2, account + 1)


async def test_a_login_upgrades_a_hash_made_with_older_cost_settings(
    make_shop: ShopFactory,
) -> None:
    old = await make_shop(password_hash_memory_kib=256, password_hash_iterations=1)
    user = await old.create_user()
    assert (await stored_hash(old, user.email)).startswith("$argon2id$v=19$m=256,t=1,p=1$")
    upgraded = await make_shop(password_hash_memory_kib=512, password_hash_iterations=2)
    assert (await upgraded.log_in(user.email, "a wrong password")).status_code == 401
    assert (await stored_hash(upgraded, user.email)).startswith("$argon2id$v=19$m=256,t=1,p=1$")
    assert (await upgraded.log_in(user.email)).status_code == 200
    assert (await stored_hash(upgraded, user.email)).startswith("$argon2id$v=19$m=512,t=2,p=1$")
    assert (await upgraded.log_in(user.email)).status_code == 200


async def test_the_default_cost_is_owasp_argon2id_with_a_salt_per_hash(
    make_shop: ShopFactory,
) -> None:
    production_cost = await make_shop(password_hash_memory_kib=19456, password_hash_iterations=2)
    first = await production_cost.create_user()
    second = await production_cost.create_user()
    hashes = [await stored_hash(production_cost, user.email) for user in (first, second)]
    assert all(hashed.startswith(OWASP_HASH_PREFIX) for hashed in hashes)
    salts = {hashed.split("$")[4] for hashed in hashes}
    assert len(salts) == 2
    assert (await production_cost.log_in(first.email)).status_code == 200


@pytest.mark.parametrize(
    "form",
    [
        {},
        {"username": "ada@example.com"},
        {"password": PASSWORD},
        {"username": "ada@example.com", "password": ""},
        {"username": "ada@example.com", "password": "p" * 129},
        {"username": "ada@example.com", "password": "p" * 100_000},
        {"username": "a" * 321, "password": PASSWORD},
        {"username": "ada@example.com", "password": PASSWORD, "grant_type": "client_credentials"},
    ],
    ids=["empty", "no-password", "no-username", "empty-password", "129", "100k", "long-name", "gt"],
)
async def test_malformed_login_forms_are_422(shop: Shop, form: dict[str, str]) -> None:
    checks = password_checks("dummy") + password_checks("account")
    response = await shop.client.post(TOKEN, data=form)
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    # Refused before any hashing: an oversized password costs no Argon2 run.
    assert password_checks("dummy") + password_checks("account") == checks


async def test_a_json_login_is_refused_with_a_problem(shop: Shop) -> None:
    response = await shop.client.post(TOKEN, json={"username": "a@example.com", "password": "x"})
    assert response.status_code in {415, 422}
    assert response.headers["content-type"] == "application/problem+json"


async def test_swagger_authorize_uses_the_password_flow(shop: Shop) -> None:
    schema = (await shop.client.get("/api/openapi.json")).json()
    schemes = schema["components"]["securitySchemes"]
    flows = [scheme["flows"] for scheme in schemes.values() if scheme["type"] == "oauth2"]
    assert flows == [{"password": {"scopes": {}, "tokenUrl": TOKEN}}]
    me = schema["paths"]["/api/v1/users/me"]["get"]
    assert me["security"] == [{name: []} for name in schemes]
