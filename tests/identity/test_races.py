"""Identity under concurrency: whatever the interleaving, the invariants hold (exact counts)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial

import httpx2
from sqlalchemy import func, select, update

from order_api.users.models import Role, User
from tests.accounts import PASSWORD, Account, Shop, ShopFactory

NEW_PASSWORD = "a brand new passphrase 7"
# Costly enough that a login's Argon2 run overlaps the other request's work.
SLOW_HASHING = {"password_hash_memory_kib": 16384, "password_hash_iterations": 2}


async def change_password(shop: Shop, account: Account) -> httpx2.Response:
    body = {"password": NEW_PASSWORD, "current_password": PASSWORD}
    return await shop.client.patch("/api/v1/users/me", json=body, headers=account.headers)


async def after(delay: float, request: Callable[[], Awaitable[httpx2.Response]]) -> httpx2.Response:
    await asyncio.sleep(delay)
    return await request()


async def hash_seconds(shop: Shop) -> float:
    """How long one hash takes here, to stagger requests across each other's Argon2 runs."""
    started = time.perf_counter()
    await shop.app.state.passwords.hash(PASSWORD)
    return time.perf_counter() - started


async def assert_only_the_new_password_works(shop: Shop, email: str) -> None:
    assert (await shop.log_in(email, PASSWORD)).status_code == 401
    assert (await shop.log_in(email, NEW_PASSWORD)).status_code == 200


async def assert_session_dead(shop: Shop, pair: dict[str, str]) -> None:
    assert (await shop.me(pair["access_token"])).status_code == 401
    assert (await shop.refresh(pair["refresh_token"])).status_code == 401


async def test_concurrent_registrations_of_one_email_create_one_account(shop: Shop) -> None:
    spellings = ["twin@example.com", "Twin@Example.com", "TWIN@EXAMPLE.COM", "twin@EXAMPLE.com"]
    responses = await asyncio.gather(*(shop.register(email=email) for email in spellings * 3))
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: 1, 409: len(spellings) * 3 - 1}
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"email_taken"}


async def test_a_login_racing_a_password_change_never_outlives_it(
    make_shop: ShopFactory,
) -> None:
    shop = await make_shop(**SLOW_HASHING)
    seconds = await hash_seconds(shop)
    for stagger in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5):
        account = await shop.account()
        changed, logged_in = await asyncio.gather(
            change_password(shop, account),
            after(stagger * seconds, partial(shop.log_in, account.email, PASSWORD)),
        )
        assert changed.status_code == 200
        assert logged_in.status_code in {200, 401}
        if logged_in.status_code == 200:
            await assert_session_dead(shop, logged_in.json())
        await assert_only_the_new_password_works(shop, account.email)


async def test_a_rehashing_login_never_reverts_a_password_change(make_shop: ShopFactory) -> None:
    cheap = await make_shop()
    slow = await make_shop(**SLOW_HASHING)
    seconds = await hash_seconds(slow)
    for stagger in (0.5, 1.0, 1.5, 2.0):
        user = await cheap.create_user()  # hashed at the cheap cost: a login on `slow` rehashes
        account = await login_account(cheap, user.email)  # same cost there: no rehash yet
        changed, _ = await asyncio.gather(
            change_password(slow, account),
            after(stagger * seconds, partial(slow.log_in, user.email, PASSWORD)),
        )
        assert changed.status_code == 200
        await assert_only_the_new_password_works(slow, user.email)


async def test_a_refresh_racing_a_password_change_never_outlives_it(
    make_shop: ShopFactory,
) -> None:
    shop = await make_shop(**SLOW_HASHING)
    seconds = await hash_seconds(shop)
    for stagger in (0.0, 1.0, 2.0, 2.5):
        account = await shop.account()
        changed, refreshed = await asyncio.gather(
            change_password(shop, account),
            after(stagger * seconds, partial(shop.refresh, account.refresh_token)),
        )
        assert changed.status_code == 200
        if refreshed.status_code == 200:
            await assert_session_dead(shop, refreshed.json())
        else:
            assert refreshed.status_code == 401


async def test_two_admins_removing_each_other_leave_one_admin(shop: Shop) -> None:
    for _ in range(5):
        first, second = await shop.account(Role.ADMIN), await shop.account(Role.ADMIN)
        demote = shop.client.patch(
            f"/api/v1/users/{second.id}", json={"role": "customer"}, headers=first.headers
        )
        delete = shop.client.delete(f"/api/v1/users/{first.id}", headers=second.headers)
        statuses = sorted(response.status_code for response in await asyncio.gather(demote, delete))
        # One wins; the other is refused as the last admin, or its token died with the winner's
        # change (a demotion or deactivation refuses the loser's token at once).
        assert statuses in ([200, 401], [200, 409], [204, 401], [204, 409])
        assert await active_admins(shop) == 1
        await demote_every_admin(shop)


async def login_account(shop: Shop, email: str) -> Account:
    pair = (await shop.log_in(email)).json()
    me = (await shop.me(pair["access_token"])).json()
    return Account(
        id=uuid.UUID(me["id"]),
        email=email,
        password=PASSWORD,
        role=Role.CUSTOMER,
        access_token=pair["access_token"],
        refresh_token=pair["refresh_token"],
    )


async def active_admins(shop: Shop) -> int:
    async with shop.app.state.sessionmaker() as session:
        query = select(func.count()).where(User.role == Role.ADMIN, User.is_active.is_(True))
        return int(await session.scalar(query) or 0)


async def demote_every_admin(shop: Shop) -> None:
    """Set-up for the next round, straight in the database: it starts with no admin."""
    async with shop.app.state.sessionmaker() as session:
        await session.execute(
            update(User).where(User.role == Role.ADMIN).values(role=Role.CUSTOMER)
        )
        await session.commit()
