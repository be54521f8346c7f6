"""Refresh tokens: opaque, stored hashed, single-use, in families that die together (JWT-07..10)."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from order_api.auth.models import RefreshToken, RefreshTokenFamily
from tests.accounts import Shop, ShopFactory

CONCURRENT_REFRESHES = 20


async def test_a_refresh_rotates_both_tokens(shop: Shop) -> None:
    account = await shop.account()
    response = await shop.refresh(account.refresh_token)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    pair = response.json()
    assert pair["refresh_token"] != account.refresh_token
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 15 * 60
    assert (await shop.me(pair["access_token"])).json()["id"] == str(account.id)


async def test_a_reused_refresh_token_revokes_its_family(shop: Shop) -> None:
    account = await shop.account()
    successor = (await shop.refresh(account.refresh_token)).json()["refresh_token"]
    replay = await shop.refresh(account.refresh_token)
    assert replay.status_code == 401
    assert replay.json()["code"] == "invalid_refresh_token"
    assert replay.headers["content-type"] == "application/problem+json"
    # The thief's replay killed the legitimate successor too; a new login still works.
    assert (await shop.refresh(successor)).status_code == 401
    assert (await shop.log_in(account.email)).status_code == 200


async def test_of_concurrent_refreshes_of_one_token_exactly_one_succeeds(
    make_shop: ShopFactory,
) -> None:
    # Two apps with their own connection pools on one database, as two API processes would be.
    first, second = await make_shop(), await make_shop()
    account = await first.account()
    responses = await asyncio.gather(
        *(
            (first if index % 2 else second).refresh(account.refresh_token)
            for index in range(CONCURRENT_REFRESHES)
        )
    )
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {200: 1, 401: CONCURRENT_REFRESHES - 1}
    winner = next(response.json() for response in responses if response.status_code == 200)
    # The reuse revoked the family: the one token issued is dead as well.
    assert (await second.refresh(winner["refresh_token"])).status_code == 401
    assert await live_families(first, account.id) == 0


async def test_logout_ends_one_login_and_leaves_the_others(shop: Shop) -> None:
    account = await shop.account()
    other_login = (await shop.log_in(account.email)).json()
    response = await shop.client.post(
        "/api/v1/auth/logout", json={"refresh_token": account.refresh_token}
    )
    assert response.status_code == 204
    assert (await shop.refresh(account.refresh_token)).status_code == 401
    assert (await shop.refresh(other_login["refresh_token"])).status_code == 200


async def test_logout_with_an_unknown_token_is_accepted_and_changes_nothing(shop: Shop) -> None:
    account = await shop.account()
    response = await shop.client.post("/api/v1/auth/logout", json={"refresh_token": "nonsense"})
    assert response.status_code == 204
    assert (await shop.refresh(account.refresh_token)).status_code == 200


async def test_logout_all_revokes_every_family(shop: Shop) -> None:
    account = await shop.account()
    other_login = (await shop.log_in(account.email)).json()
    response = await shop.client.post("/api/v1/auth/logout-all", headers=account.headers)
    assert response.status_code == 204
    assert (await shop.refresh(account.refresh_token)).status_code == 401
    assert (await shop.refresh(other_login["refresh_token"])).status_code == 401


async def test_a_family_expires_at_its_absolute_lifetime(shop: Shop) -> None:
    account = await shop.account()
    fresh = (await shop.refresh(account.refresh_token)).json()["refresh_token"]
    # Move the login's end into the past, as REFRESH_TOKEN_EXPIRE_DAYS passing would.
    async with shop.app.state.sessionmaker() as session:
        await session.execute(
            update(RefreshTokenFamily)
            .where(RefreshTokenFamily.user_id == account.id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
    assert (await shop.refresh(fresh)).status_code == 401


async def test_a_login_starts_a_family_that_lives_refresh_token_expire_days(shop: Shop) -> None:
    account = await shop.account()
    async with shop.app.state.sessionmaker() as session:
        family = await session.scalar(
            select(RefreshTokenFamily).where(RefreshTokenFamily.user_id == account.id)
        )
    assert family is not None
    assert family.expires_at - family.created_at == timedelta(days=14)


async def test_expired_families_are_dropped_at_the_next_login(shop: Shop) -> None:
    account = await shop.account()
    async with shop.app.state.sessionmaker() as session:
        await session.execute(
            update(RefreshTokenFamily).values(expires_at=datetime.now(UTC) - timedelta(days=1))
        )
        await session.commit()
    assert (await shop.log_in(account.email)).status_code == 200
    async with shop.app.state.sessionmaker() as session:
        families = (
            await session.scalars(
                select(RefreshTokenFamily).where(RefreshTokenFamily.user_id == account.id)
            )
        ).all()
    assert len(families) == 1
    assert families[0].expires_at > datetime.now(UTC)


async def test_refresh_tokens_are_random_and_only_their_hashes_are_stored(shop: Shop) -> None:
    account = await shop.account()
    tokens = [account.refresh_token]
    for _ in range(30):
        tokens.append((await shop.refresh(tokens[-1])).json()["refresh_token"])
    assert len(set(tokens)) == len(tokens)
    assert all(len(token) >= 43 for token in tokens)  # 256 bits in base64url
    async with shop.app.state.sessionmaker() as session:
        stored = set((await session.scalars(select(RefreshToken.token_hash))).all())
    assert not stored & set(tokens)
    assert {hashlib.sha256(token.encode()).hexdigest() for token in tokens} <= stored


async def test_an_access_token_is_not_a_refresh_token(shop: Shop) -> None:
    account = await shop.account()
    assert (await shop.refresh(account.access_token)).status_code == 401


async def test_malformed_refresh_bodies_are_422(shop: Shop) -> None:
    for body in ({}, {"refresh_token": ""}, {"refresh_token": "x" * 513}, {"refresh_token": 1}):
        response = await shop.client.post("/api/v1/auth/refresh", json=body)
        assert response.status_code == 422, body
        assert response.json()["code"] == "validation_error"
    extra = {"refresh_token": "x", "user_id": "someone"}
    assert (await shop.client.post("/api/v1/auth/refresh", json=extra)).status_code == 422
    nul = await shop.client.post("/api/v1/auth/refresh", json={"refresh_token": "a\u0000b"})
    assert nul.status_code == 401


async def live_families(shop: Shop, user_id: object) -> int:
    async with shop.app.state.sessionmaker() as session:
        families = await session.scalars(
            select(RefreshTokenFamily).where(
                RefreshTokenFamily.user_id == user_id, RefreshTokenFamily.revoked_at.is_(None)
            )
        )
        return len(families.all())
