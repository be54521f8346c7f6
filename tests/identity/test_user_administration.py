"""The users listing, an admin's reads and changes, soft deletion, and who may do which
(API-03, API-08, API-13, JWT-06)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx2
import pytest

from order_api.platform.errors import PROBLEM_MEDIA_TYPE
from order_api.users.models import Role
from tests.accounts import Account, Shop, bearer, new_email

USERS = "/api/v1/users"
# API-08: no response item may carry anything that looks like a credential.
SECRET_KEY_PATTERN = re.compile("pass|hash|secret|salt|token", re.IGNORECASE)


def user_url(user_id: uuid.UUID | str) -> str:
    return f"{USERS}/{user_id}"


def assert_problem(response: httpx2.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    return body


def assert_no_secret_keys(user: dict[str, Any]) -> None:
    leaked = [key for key in user if SECRET_KEY_PATTERN.search(key)]
    assert leaked == [], leaked


def body_without_request_id(response: httpx2.Response) -> bytes:
    """The raw body with its one varying member blanked, for byte-for-byte comparisons."""
    request_id = response.json()["request_id"]
    return response.content.replace(request_id.encode(), b"")


async def list_users(shop: Shop, token: str, **params: Any) -> httpx2.Response:
    return await shop.client.get(USERS, params=params, headers=bearer(token))


async def listed_emails(shop: Shop, token: str, **params: Any) -> list[str]:
    response = await list_users(shop, token, **params)
    assert response.status_code == 200, response.text
    return [user["email"] for user in response.json()["items"]]


async def patch_user(
    shop: Shop, admin: Account, user_id: uuid.UUID, **changes: Any
) -> httpx2.Response:
    return await shop.client.patch(user_url(user_id), json=changes, headers=admin.headers)


async def read_user(shop: Shop, admin: Account, user_id: uuid.UUID) -> dict[str, Any]:
    response = await shop.client.get(user_url(user_id), headers=admin.headers)
    assert response.status_code == 200, response.text
    user: dict[str, Any] = response.json()
    return user


async def token_of_new_user(shop: Shop, email: str, role: Role = Role.CUSTOMER) -> str:
    """An access token for a user with exactly this e-mail, so fragment searches are exact."""
    await shop.create_user(role, email=email)
    response = await shop.log_in(email)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


# --- Listing -------------------------------------------------------------------------------------


async def test_staff_and_admin_get_a_page_of_users(shop: Shop) -> None:
    staff = await shop.account(Role.STAFF)
    admin = await shop.account(Role.ADMIN)
    for caller in (staff, admin):
        response = await list_users(shop, caller.access_token)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "total", "page", "page_size"}
        assert (page["total"], page["page"], page["page_size"]) == (2, 1, 20)
        assert [item["id"] for item in page["items"]] == [str(staff.id), str(admin.id)]
        for item in page["items"]:
            assert_no_secret_keys(item)


async def test_pages_are_oldest_first_and_total_counts_every_page(shop: Shop) -> None:
    admin = await shop.account(Role.ADMIN)
    others = [await shop.create_user(role) for role in (Role.CUSTOMER, Role.STAFF, Role.CUSTOMER)]
    others.append(await shop.create_user(Role.ADMIN))
    oldest_first = [str(admin.id), *(str(user.id) for user in others)]

    pages = []
    for number in (1, 2, 3, 4):
        response = await list_users(shop, admin.access_token, page=number, page_size=2)
        assert response.status_code == 200, response.text
        pages.append(response.json())

    assert [[item["id"] for item in page["items"]] for page in pages] == [
        oldest_first[0:2],
        oldest_first[2:4],
        oldest_first[4:5],
        [],
    ]
    assert [page["total"] for page in pages] == [5, 5, 5, 5]
    assert [(page["page"], page["page_size"]) for page in pages] == [(n, 2) for n in (1, 2, 3, 4)]


async def test_the_listing_filters_by_email_fragment_role_and_active_flag(shop: Shop) -> None:
    token = await token_of_new_user(shop, "boss@example.com", Role.ADMIN)
    for email in ("ada@example.com", "ab_cd@example.com", "abxcd@example.com"):
        await shop.create_user(email=email)
    await shop.create_user(Role.STAFF, email="grace@example.com")
    await shop.create_user(email="per%cent@example.com")
    inactive = await shop.create_user(email="perxcent@example.com")
    response = await shop.client.patch(
        user_url(inactive.id), json={"is_active": False}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text

    assert await listed_emails(shop, token, email="ADA") == ["ada@example.com"]
    # `_` and `%` are LIKE wildcards in SQL; here they must match only themselves.
    assert await listed_emails(shop, token, email="b_c") == ["ab_cd@example.com"]
    assert await listed_emails(shop, token, email="r%c") == ["per%cent@example.com"]
    assert await listed_emails(shop, token, role="staff") == ["grace@example.com"]
    assert await listed_emails(shop, token, is_active="false") == ["perxcent@example.com"]
    assert await listed_emails(shop, token, email="per", is_active="true") == [
        "per%cent@example.com"
    ]
    filtered = (await list_users(shop, token, email="example.com", role="customer")).json()
    assert filtered["total"] == 5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("page_size", "101"),
        ("page_size", "0"),
        ("page", "0"),
        ("page", "-1"),
        ("page", "99999999999999999999"),
        ("role", "root"),
        ("is_active", "maybe"),
        ("email", "\x00"),
        ("email", "a" * 201),
    ],
)
async def test_bad_listing_parameters_are_422_problems(shop: Shop, name: str, value: str) -> None:
    admin = await shop.account(Role.ADMIN)
    body = assert_problem(
        await list_users(shop, admin.access_token, **{name: value}), 422, "validation_error"
    )
    assert [error["loc"] for error in body["errors"]] == [["query", name]]


async def test_a_customer_may_not_list_users(shop: Shop) -> None:
    customer = await shop.account()
    assert_problem(await list_users(shop, customer.access_token), 403, "forbidden")


# --- An admin reads and changes any account ------------------------------------------------------


async def test_an_admin_reads_any_user(shop: Shop) -> None:
    admin = await shop.account(Role.ADMIN)
    for role in Role:
        user = await shop.create_user(role)
        read = await read_user(shop, admin, user.id)
        assert (read["id"], read["email"], read["role"]) == (str(user.id), user.email, role.value)
        assert_no_secret_keys(read)
    assert (await read_user(shop, admin, admin.id))["role"] == "admin"


async def test_reading_an_unknown_or_malformed_user_id(shop: Shop) -> None:
    admin = await shop.account(Role.ADMIN)
    unknown = await shop.client.get(user_url(uuid.uuid4()), headers=admin.headers)
    assert_problem(unknown, 404, "not_found")
    malformed = await shop.client.get(user_url("not-a-uuid"), headers=admin.headers)
    assert_problem(malformed, 404, "not_found")
    me = await shop.client.delete("/api/v1/users/me", headers=admin.headers)
    assert_problem(me, 405, "method_not_allowed")
    assert me.headers["allow"] == "GET, PATCH"


async def test_an_admin_changes_name_email_role_and_active_flag(shop: Shop) -> None:
    admin = await shop.account(Role.ADMIN)
    target = await shop.create_user()
    response = await patch_user(
        shop,
        admin,
        target.id,
        full_name="Grace Hopper",
        email="Grace.Hopper@Example.COM",
        role="staff",
        is_active=False,
    )
    assert response.status_code == 200, response.text
    assert_no_secret_keys(response.json())
    stored = await read_user(shop, admin, target.id)
    assert stored["full_name"] == "Grace Hopper"
    assert stored["email"] == "grace.hopper@example.com"
    assert (stored["role"], stored["is_active"]) == ("staff", False)
    assert response.json() == stored


async def test_another_users_email_in_any_case_is_taken(shop: Shop) -> None:
    admin = await shop.account(Role.ADMIN)
    owner = await shop.create_user()
    target = await shop.create_user()
    response = await patch_user(shop, admin, target.id, email=owner.email.upper())
    assert_problem(response, 409, "email_taken")
    assert (await read_user(shop, admin, target.id))["email"] == target.email


async def test_fields_an_admin_may_not_set_are_refused(shop: Shop) -> None:
    admin = await shop.account(Role.ADMIN)
    target = await shop.create_user()
    refused = {
        "password": "a brand new passphrase",
        "hashed_password": "$argon2id$v=19$m=256,t=1,p=1$c2FsdA$aGFzaA",
        "id": str(uuid.uuid4()),
        "created_at": "2000-01-01T00:00:00Z",
    }
    for field, value in refused.items():
        body = assert_problem(
            await patch_user(shop, admin, target.id, **{field: value}), 422, "validation_error"
        )
        assert ["body", field] in [error["loc"] for error in body["errors"]], field
    # Nothing slipped through: the old password still logs in, under the same id.
    assert (await shop.log_in(target.email)).status_code == 200
    assert (await read_user(shop, admin, target.id))["id"] == str(target.id)


async def test_a_promotion_needs_a_token_refresh_and_then_applies(shop: Shop) -> None:
    admin = await shop.account(Role.ADMIN)
    target = await shop.account()
    assert (await shop.me(target.access_token)).status_code == 200

    assert (await patch_user(shop, admin, target.id, role="staff")).status_code == 200

    assert_problem(await shop.me(target.access_token), 401, "invalid_token")
    # Documented decision: a role change forces a token refresh, not a new login.
    refreshed = await shop.refresh(target.refresh_token)
    assert refreshed.status_code == 200, refreshed.text
    new_token = refreshed.json()["access_token"]
    assert (await list_users(shop, new_token)).status_code == 200


async def test_a_demoted_staff_member_loses_staff_rights_at_once(shop: Shop) -> None:
    admin = await shop.account(Role.ADMIN)
    staff = await shop.account(Role.STAFF)
    assert (await list_users(shop, staff.access_token)).status_code == 200

    assert (await patch_user(shop, admin, staff.id, role="customer")).status_code == 200

    # API-13: the stale token does not keep the old role for the rest of its lifetime.
    assert_problem(await list_users(shop, staff.access_token), 401, "invalid_token")
    refreshed = await shop.refresh(staff.refresh_token)
    assert refreshed.status_code == 200, refreshed.text
    assert_problem(await list_users(shop, refreshed.json()["access_token"]), 403, "forbidden")


async def test_a_deactivated_user_is_shut_out_until_reactivated(shop: Shop) -> None:
    admin = await shop.account(Role.ADMIN)
    target = await shop.account()

    assert (await patch_user(shop, admin, target.id, is_active=False)).status_code == 200

    assert_problem(await shop.me(target.access_token), 401, "invalid_token")
    assert_problem(await shop.refresh(target.refresh_token), 401, "invalid_refresh_token")
    # JWT-06: the right password of a deactivated account reveals nothing a wrong one does not.
    deactivated = await shop.log_in(target.email, target.password)
    unknown = await shop.log_in(new_email("nobody"), "not the password")
    assert_problem(deactivated, 401, "invalid_credentials")
    assert body_without_request_id(deactivated) == body_without_request_id(unknown)
    assert sorted(deactivated.headers.keys()) == sorted(unknown.headers.keys())

    assert (await patch_user(shop, admin, target.id, is_active=True)).status_code == 200
    assert (await shop.log_in(target.email, target.password)).status_code == 200


# --- The last admin ------------------------------------------------------------------------------

STEP_DOWN_WAYS = ["demote", "deactivate", "delete"]


async def step_down(shop: Shop, admin: Account, way: str) -> httpx2.Response:
    """The admin removes their own admin rights: by a role change, a deactivation or a DELETE."""
    if way == "delete":
        return await shop.client.delete(user_url(admin.id), headers=admin.headers)
    change = {"role": "staff"} if way == "demote" else {"is_active": False}
    return await patch_user(shop, admin, admin.id, **change)


@pytest.mark.parametrize("way", STEP_DOWN_WAYS)
async def test_the_only_active_admin_cannot_step_down(shop: Shop, way: str) -> None:
    admin = await shop.account(Role.ADMIN)
    await shop.create_user(Role.STAFF)
    # A deactivated admin cannot run the shop, so it does not count as a second one.
    retired = await shop.create_user(Role.ADMIN)
    assert (await patch_user(shop, admin, retired.id, is_active=False)).status_code == 200

    assert_problem(await step_down(shop, admin, way), 409, "last_admin")

    me = await shop.me(admin.access_token)
    assert me.status_code == 200, me.text
    assert (me.json()["role"], me.json()["is_active"]) == ("admin", True)


@pytest.mark.parametrize("way", STEP_DOWN_WAYS)
async def test_with_a_second_admin_an_admin_can_step_down(shop: Shop, way: str) -> None:
    admin = await shop.account(Role.ADMIN)
    second = await shop.account(Role.ADMIN)

    response = await step_down(shop, admin, way)
    assert response.status_code == (204 if way == "delete" else 200), response.text

    stepped_down = await read_user(shop, second, admin.id)
    assert (stepped_down["role"], stepped_down["is_active"]) == (
        ("staff", True) if way == "demote" else ("admin", False)
    )
    # Now the second admin is the last one.
    assert_problem(await step_down(shop, second, way), 409, "last_admin")


# --- Soft deletion and objects of other users (API-03) ----------------------------------------


async def test_a_customer_deletes_themself_and_is_shut_out(shop: Shop) -> None:
    admin = await shop.account(Role.ADMIN)
    customer = await shop.account()

    response = await shop.client.delete(user_url(customer.id), headers=customer.headers)
    assert response.status_code == 204, response.text

    assert_problem(await shop.me(customer.access_token), 401, "invalid_token")
    assert_problem(await shop.log_in(customer.email), 401, "invalid_credentials")
    again = await shop.client.delete(user_url(customer.id), headers=admin.headers)
    assert again.status_code == 204, again.text
    # A soft delete: the account is still there, inactive.
    assert (await read_user(shop, admin, customer.id))["is_active"] is False


async def test_a_customer_deleting_another_user_gets_the_unknown_user_404(shop: Shop) -> None:
    attacker = await shop.account()
    victim = await shop.account()

    response = await shop.client.delete(user_url(victim.id), headers=attacker.headers)
    unknown = await shop.client.delete(user_url(uuid.uuid4()), headers=attacker.headers)

    assert_problem(response, 404, "not_found")
    assert body_without_request_id(response) == body_without_request_id(unknown)
    assert (await shop.log_in(victim.email)).status_code == 200
    assert (await shop.me(victim.access_token)).json()["is_active"] is True


async def test_staff_deleting_another_user_gets_404(shop: Shop) -> None:
    admin = await shop.account(Role.ADMIN)
    staff = await shop.account(Role.STAFF)
    customer = await shop.create_user()

    response = await shop.client.delete(user_url(customer.id), headers=staff.headers)

    assert_problem(response, 404, "not_found")
    assert (await read_user(shop, admin, customer.id))["is_active"] is True


async def test_an_admin_deleting_a_customer_ends_their_sessions(shop: Shop) -> None:
    admin = await shop.account(Role.ADMIN)
    customer = await shop.account()

    response = await shop.client.delete(user_url(customer.id), headers=admin.headers)

    assert response.status_code == 204, response.text
    assert_problem(await shop.refresh(customer.refresh_token), 401, "invalid_refresh_token")
    assert (await read_user(shop, admin, customer.id))["is_active"] is False


async def test_a_customer_may_not_read_or_change_another_user(shop: Shop) -> None:
    customer = await shop.account()
    other = await shop.account()

    read = await shop.client.get(user_url(other.id), headers=customer.headers)
    changed = await shop.client.patch(
        user_url(other.id), json={"full_name": "x"}, headers=customer.headers
    )

    assert_problem(read, 403, "forbidden")
    assert_problem(changed, 403, "forbidden")
    assert (await shop.me(other.access_token)).json()["full_name"] == "Test"


async def test_a_deleted_users_email_stays_taken(shop: Shop) -> None:
    registered = await shop.register()
    assert registered.status_code == 201, registered.text
    email = registered.json()["email"]
    logged_in = (await shop.log_in(email)).json()
    user_id = registered.json()["id"]
    deleted = await shop.client.delete(user_url(user_id), headers=bearer(logged_in["access_token"]))
    assert deleted.status_code == 204, deleted.text

    # Documented decision: an admin reactivates the account instead of a new registration.
    for spelling in (email, email.upper()):
        assert_problem(await shop.register(email=spelling), 409, "email_taken")
