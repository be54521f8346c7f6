"""Every malformed, forged, expired or mistyped access token is a 401 problem (JWT-01..05, 11)."""

from __future__ import annotations

import uuid
from typing import Any

import jwt
import pytest

from order_api.users.models import Role, User
from tests.accounts import Account, Shop, bearer
from tests.tokens import FromNow, b64, claims_for, mint

ME = "/api/v1/users/me"
# Public reads look up only the caller's role, with a compiled SELECT of their own.
PUBLIC_READ = "/api/v1/products?page_size=1"
ORDERS = "/api/v1/orders"


async def assert_invalid_token(shop: Shop, token: str, path: str = ME) -> None:
    response = await shop.client.get(path, headers=bearer(token))
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert response.json()["code"] == "invalid_token"


async def test_a_token_minted_with_the_secret_is_accepted(shop: Shop) -> None:
    # The baseline the forgeries below differ from in one way each.
    user = await shop.create_user()
    response = await shop.client.get(ME, headers=bearer(mint(claims_for(user.id))))
    assert response.status_code == 200
    assert response.json()["id"] == str(user.id)


async def test_the_login_token_lives_access_token_expire_minutes(shop: Shop) -> None:
    account = await shop.account()
    claims = jwt.decode(account.access_token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == pytest.approx(15 * 60)
    assert claims["type"] == "access"
    assert claims["sub"] == str(account.id)


@pytest.mark.parametrize("algorithm_name", ["none", "None", "NONE"])
async def test_unsigned_tokens_are_refused(shop: Shop, algorithm_name: str) -> None:
    user = await shop.create_user()
    header = {"alg": algorithm_name, "typ": "JWT"}
    await assert_invalid_token(shop, f"{b64(header)}.{b64(claims_for(user.id))}.")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
async def test_other_algorithms_with_the_real_secret_are_refused(
    shop: Shop, algorithm: str
) -> None:
    user = await shop.create_user()
    await assert_invalid_token(shop, mint(claims_for(user.id), algorithm=algorithm))


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "RS256", "typ": "JWT"},
        {"alg": "ES256", "typ": "JWT"},
        {"alg": "HS256", "jku": "http://127.0.0.1:9/keys", "kid": "../../etc/passwd"},
        {"alg": "HS256", "jwk": {"kty": "oct", "k": "c2VjcmV0"}},
    ],
)
async def test_keys_and_algorithms_never_come_from_the_token(
    shop: Shop, header: dict[str, Any]
) -> None:
    user = await shop.create_user()
    forged = f"{b64(header)}.{b64(claims_for(user.id))}.c2lnbmF0dXJl"
    await assert_invalid_token(shop, forged)


async def test_a_tampered_payload_keeps_no_signature(shop: Shop) -> None:
    victim, attacker = await shop.create_user(), await shop.create_user()
    header, _, signature = mint(claims_for(attacker.id)).split(".")
    tampered = claims_for(victim.id, role="admin")
    await assert_invalid_token(shop, f"{header}.{b64(tampered)}.{signature}")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
@pytest.mark.parametrize("key", ["changethis", "secret", "x" * 48])
async def test_tokens_signed_with_another_key_are_refused(shop: Shop, key: str) -> None:
    user = await shop.create_user()
    await assert_invalid_token(shop, mint(claims_for(user.id), key=key))


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": FromNow(-10)},  # expired beyond the 5 s leeway
        {"exp": None},
        {"iat": None},
        {"iat": FromNow(3600)},
        {"nbf": FromNow(60)},
        {"exp": "9999999999"},
        {"iat": "0"},
        {"exp": True},
        {"exp": 10**400},
        {"iat": -1},
        {"iat": -(10**400)},
        {"type": None},
        {"type": "refresh"},
        {"type": "email_verification"},
        {"iss": "someone-else"},
        {"iss": None},
        {"aud": "another-api"},
        {"aud": None},
    ],
    ids=lambda changes: "-".join(f"{name}={value!r}"[:30] for name, value in changes.items()),
)
async def test_time_type_issuer_and_audience_claims_are_enforced(
    shop: Shop, changes: dict[str, Any]
) -> None:
    user = await shop.create_user()
    await assert_invalid_token(shop, mint(claims_for(user.id, **changes)))


# The last is a well-formed id no user has (fixed: parallel workers must collect the same tests).
UNKNOWN_USER_ID = "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize("subject", [None, 123, "not-a-uuid", "", "x" * 10_000, UNKNOWN_USER_ID])
async def test_bad_or_unknown_subjects_are_refused(shop: Shop, subject: object) -> None:
    claims = claims_for("placeholder")
    if subject is None:
        del claims["sub"]
    else:
        claims["sub"] = subject
    await assert_invalid_token(shop, mint(claims))


@pytest.mark.parametrize("spelling", ["upper", "braces", "urn", "hex"])
async def test_a_subject_is_only_the_spelling_we_issue(shop: Shop, spelling: str) -> None:
    user = await shop.create_user()
    spelled = {
        "upper": str(user.id).upper(),
        "braces": "{" + str(user.id) + "}",
        "urn": user.id.urn,
        "hex": user.id.hex,
    }[spelling]
    await assert_invalid_token(shop, mint(claims_for(spelled)))


async def test_a_deactivated_users_token_is_refused(shop: Shop) -> None:
    account = await shop.account()
    assert (
        await shop.client.delete(f"/api/v1/users/{account.id}", headers=account.headers)
    ).status_code == 204
    await assert_invalid_token(shop, account.access_token)


async def test_the_refresh_token_is_not_an_access_token(shop: Shop) -> None:
    account = await shop.account()
    await assert_invalid_token(shop, account.refresh_token)


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer ", "Bearer  x", "Basic dXNlcjpw", "Bearer " + "a" * 10_240, "Bearer é", "x"],
)
async def test_malformed_authorization_headers_are_401(shop: Shop, authorization: str) -> None:
    # Sent as UTF-8 bytes, as a careless client would: "é" is not ASCII.
    response = await shop.client.get(ME, headers={b"Authorization": authorization.encode()})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_token_in_the_query_string_is_ignored(shop: Shop) -> None:
    account = await shop.account()
    response = await shop.client.get(ME, params={"access_token": account.access_token})
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


async def test_logout_all_refuses_access_tokens_issued_before_it(shop: Shop) -> None:
    first = await shop.account(Role.CUSTOMER)
    second_login = (await shop.log_in(first.email)).json()
    response = await shop.client.post("/api/v1/auth/logout-all", headers=first.headers)
    assert response.status_code == 204
    await assert_invalid_token(shop, first.access_token)
    await assert_invalid_token(shop, second_login["access_token"])
    # A login right after (same second, even) is not caught by the cut-off.
    fresh = (await shop.log_in(first.email)).json()
    assert (await shop.me(fresh["access_token"])).status_code == 200


async def test_a_public_read_refuses_the_tokens_a_private_one_refuses(shop: Shop) -> None:
    revoked, deactivated = await shop.account(Role.STAFF), await shop.account(Role.STAFF)
    assert (await shop.client.get(PUBLIC_READ, headers=revoked.headers)).status_code == 200
    logged_out = await shop.client.post("/api/v1/auth/logout-all", headers=revoked.headers)
    assert logged_out.status_code == 204
    url = f"/api/v1/users/{deactivated.id}"
    assert (await shop.client.delete(url, headers=deactivated.headers)).status_code == 204
    for token in (revoked.access_token, deactivated.access_token, revoked.refresh_token):
        await assert_invalid_token(shop, token, PUBLIC_READ)
    await assert_invalid_token(shop, mint(claims_for(uuid.uuid4())), PUBLIC_READ)  # no such user


async def test_placing_an_order_refuses_the_tokens_a_private_read_refuses(shop: Shop) -> None:
    """Refused before the body is even validated."""
    revoked, deactivated = await shop.account(), await shop.account()
    logged_out = await shop.client.post("/api/v1/auth/logout-all", headers=revoked.headers)
    assert logged_out.status_code == 204
    url = f"/api/v1/users/{deactivated.id}"
    assert (await shop.client.delete(url, headers=deactivated.headers)).status_code == 204
    unknown = mint(claims_for(uuid.uuid4()))
    for token in (revoked.access_token, deactivated.access_token, revoked.refresh_token, unknown):
        response = await shop.client.post(ORDERS, json={}, headers=bearer(token))
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "invalid_token"


async def test_every_access_token_is_checked_against_the_database(shop: Shop) -> None:
    account: Account = await shop.account()
    assert (await shop.me(account.access_token)).status_code == 200
    async with shop.app.state.sessionmaker() as session:
        user = await session.get(User, account.id)
        assert user is not None
        await session.delete(user)
        await session.commit()
    await assert_invalid_token(shop, account.access_token)
