"""Registration and one's own profile through the API (API-06, API-08, JWT-07 b, JWT-11, PWD-04/05).

Covers e-mail normalisation, the welcome e-mail through the outbox, the password policy, text
hygiene, and PATCH /users/me with its current_password rules.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
import uuid
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import select

from order_api.jobs.models import OutboxMessage
from tests.accounts import PASSWORD, Shop, bearer, new_email
from tests.mailbox import plain_text, written
from tests.test_errors import assert_problem
from tests.waiting import wait_until

USERS = "/api/v1/users"
ME = "/api/v1/users/me"
USER_READ_KEYS = {"id", "email", "full_name", "role", "is_active", "created_at", "updated_at"}
SECRET_LOOKING_KEY = re.compile("pass|hash|secret|salt", re.IGNORECASE)
NEW_PASSWORD = "a different passphrase, long enough"
# 64 characters: spaces, two astral-plane emoji and one from the BMP.
PASSPHRASE = "purple elephants dance slowly beneath the old stone bridge 🐘 🌉 ✨"
# Written in NFC; its NFD spelling has the same look and more code points.
ACCENTED_PASSWORD = "Crème brûlée au café, s'il vous plaît"


def error_locs(body: dict[str, Any]) -> list[tuple[str | int, ...]]:
    return [tuple(error["loc"]) for error in body["errors"]]


def assert_field_rejected(response: httpx2.Response, field: str) -> dict[str, Any]:
    """A 422 validation problem whose errors point at `field` of the body."""
    body = assert_problem(response, 422, "validation_error")
    assert ("body", field) in error_locs(body), body["errors"]
    return body


def keys_anywhere(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value).union(*(keys_anywhere(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(keys_anywhere(item) for item in value))
    return set()


def timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value)


def password_of_length(length: int) -> str:
    # Random hex is never on the common-passwords list, so only the length decides.
    return secrets.token_hex(length)[:length]


async def assert_login_refused(shop: Shop, email_address: str, password: str) -> None:
    response = await shop.log_in(email_address, password)
    assert_problem(response, 401, "invalid_credentials")


async def assert_login_works(shop: Shop, email_address: str, password: str) -> str:
    """Logs in and returns the access token, which must be accepted by GET /users/me."""
    response = await shop.log_in(email_address, password)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    assert (await shop.me(token)).status_code == 200
    return token


async def patch_me(shop: Shop, token: str, body: dict[str, Any]) -> httpx2.Response:
    return await shop.client.patch(ME, json=body, headers=bearer(token))


async def outbox_recipients(shop: Shop) -> list[str]:
    async with shop.app.state.sessionmaker() as session:
        rows = await session.scalars(select(OutboxMessage))
        return sorted(row.payload["to"] for row in rows)


def mail_directory(shop: Shop) -> Path:
    data_dir: Path = shop.app.state.settings.data_dir
    return data_dir / "mail"


async def delivered_mail(shop: Shop, count: int) -> list[EmailMessage]:
    """Waits until `count` .eml files exist, then parses them all."""
    directory = mail_directory(shop)

    def enough() -> bool:
        return len(written(directory)) >= count

    await wait_until(enough, f"{count} e-mail(s) in {directory}")
    return written(directory)


# --- Registration ------------------------------------------------------------------------------


async def test_registration_returns_only_the_public_fields_with_a_normalised_email(
    shop: Shop,
) -> None:
    response = await shop.register(email="Ada.L@Example.COM", full_name="Ada Lovelace")
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == USER_READ_KEYS
    assert not {key for key in keys_anywhere(body) if SECRET_LOOKING_KEY.search(key)}
    uuid.UUID(body["id"])
    assert body["email"] == "ada.l@example.com"
    assert body["full_name"] == "Ada Lovelace"
    assert body["role"] == "customer"
    assert body["is_active"] is True
    assert timestamp(body["created_at"]) == timestamp(body["updated_at"])
    token = await assert_login_works(shop, "ada.l@example.com", PASSWORD)
    assert (await shop.me(token)).json() == body


async def test_registering_the_same_email_in_another_case_is_email_taken(shop: Shop) -> None:
    assert (await shop.register(email="Ada.L@Example.COM")).status_code == 201
    response = await shop.register(email="ADA.L@example.com", password=NEW_PASSWORD)
    assert_problem(response, 409, "email_taken")
    await assert_login_refused(shop, "ada.l@example.com", NEW_PASSWORD)


@pytest.mark.parametrize(
    "address",
    ["ada.example.com", "a@localhost", "ada\x00lovelace@example.com"],
    ids=["no-at-sign", "no-dot-in-domain", "nul-byte"],
)
async def test_an_invalid_email_is_rejected(shop: Shop, address: str) -> None:
    assert_field_rejected(await shop.register(email=address), "email")


async def test_registration_writes_a_welcome_email_to_the_new_user(shop: Shop) -> None:
    assert shop.app.state.settings.smtp_host is None
    address = new_email("grace")
    assert (await shop.register(email=address, full_name="Grace Hopper")).status_code == 201
    [message] = await delivered_mail(shop, 1)
    assert message["To"] == address
    assert message["Subject"] == "Welcome to order-api"
    # The address is unverified, so nothing the registrant typed: not the name, not the address.
    assert "Grace Hopper" not in plain_text(message)
    assert address not in plain_text(message)
    assert await outbox_recipients(shop) == [address]


async def test_a_refused_registration_queues_and_writes_no_email(shop: Shop) -> None:
    first, last = new_email("first"), new_email("last")
    assert (await shop.register(email=first)).status_code == 201
    assert_problem(await shop.register(email=first.upper()), 409, "email_taken")
    assert_field_rejected(await shop.register(password="too short"), "password")
    # A later success proves the runner is alive: anything queued before it would show up too.
    assert (await shop.register(email=last)).status_code == 201
    messages = await delivered_mail(shop, 2)
    assert sorted(message["To"] for message in messages) == sorted([first, last])
    assert await outbox_recipients(shop) == sorted([first, last])


# --- Mass assignment (API-06) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("role", "admin"),
        ("is_active", False),
        ("is_superuser", True),
        ("id", "6a0b1c1e-7d8f-4a5b-9c3d-2e1f0a9b8c7d"),
        ("created_at", "2020-01-01T00:00:00Z"),
        ("hashed_password", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g"),
    ],
)
async def test_registration_with_a_field_the_caller_may_not_set_is_rejected(
    shop: Shop, field: str, value: Any
) -> None:
    address = new_email()
    response = await shop.register(email=address, **{field: value})
    body = assert_problem(response, 422, "validation_error")
    assert any(loc[-1] == field for loc in error_locs(body)), body["errors"]
    await assert_login_refused(shop, address, PASSWORD)


@pytest.mark.parametrize(
    "change",
    [{"role": "staff"}, {"is_active": True}, {"tokens_valid_after": "2030-01-01T00:00:00Z"}],
    ids=["role", "is_active", "tokens_valid_after"],
)
async def test_own_profile_update_of_a_protected_field_is_rejected(
    shop: Shop, change: dict[str, Any]
) -> None:
    account = await shop.account()
    response = await patch_me(shop, account.access_token, change)
    body = assert_problem(response, 422, "validation_error")
    [field] = change
    assert any(loc[-1] == field for loc in error_locs(body)), body["errors"]
    me = await shop.me(account.access_token)
    assert me.status_code == 200
    assert me.json()["role"] == "customer"
    assert me.json()["is_active"] is True


# --- Password policy (PWD-04) --------------------------------------------------------------------


@pytest.mark.parametrize("length", [12, 128])
async def test_a_password_within_the_length_bounds_is_accepted(shop: Shop, length: int) -> None:
    address, password = new_email(), password_of_length(length)
    assert (await shop.register(email=address, password=password)).status_code == 201
    await assert_login_works(shop, address, password)


@pytest.mark.parametrize(
    ("length", "error_type"),
    [(11, "string_too_short"), (129, "string_too_long"), (1025, "string_too_long")],
)
async def test_a_password_outside_the_length_bounds_is_rejected(
    shop: Shop, length: int, error_type: str
) -> None:
    response = await shop.register(password=password_of_length(length))
    body = assert_field_rejected(response, "password")
    assert [error["type"] for error in body["errors"]] == [error_type]


@pytest.mark.parametrize("password", ["123qweasdzxc", "QWERTY123456"])
async def test_a_common_password_is_rejected(shop: Shop, password: str) -> None:
    body = assert_field_rejected(await shop.register(password=password), "password")
    assert "common" in body["errors"][0]["msg"]


async def test_a_passphrase_logs_in_only_verbatim(shop: Shop) -> None:
    assert len(PASSPHRASE) == 64
    address = new_email()
    assert (await shop.register(email=address, password=PASSPHRASE)).status_code == 201
    await assert_login_refused(shop, address, PASSPHRASE[:63])
    await assert_login_works(shop, address, PASSPHRASE)


async def test_a_password_is_not_unicode_normalised(shop: Shop) -> None:
    decomposed = unicodedata.normalize("NFD", ACCENTED_PASSWORD)
    assert decomposed != ACCENTED_PASSWORD
    address = new_email()
    assert (await shop.register(email=address, password=ACCENTED_PASSWORD)).status_code == 201
    await assert_login_refused(shop, address, decomposed)
    await assert_login_works(shop, address, ACCENTED_PASSWORD)


# --- Bad text and bodies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "full_name",
    ["Ada\x00Lovelace", "Ada\x1bLovelace", "Ada\nLovelace", "A" * 201],
    ids=["nul-byte", "escape", "newline", "201-characters"],
)
async def test_a_bad_full_name_is_rejected(shop: Shop, full_name: str) -> None:
    address = new_email()
    assert_field_rejected(await shop.register(email=address, full_name=full_name), "full_name")
    await assert_login_refused(shop, address, PASSWORD)


async def test_a_full_name_of_200_characters_is_accepted(shop: Shop) -> None:
    response = await shop.register(full_name="A" * 200)
    assert response.status_code == 201, response.text
    assert response.json()["full_name"] == "A" * 200


async def test_a_full_name_is_stored_trimmed(shop: Shop) -> None:
    address = new_email()
    response = await shop.register(email=address, full_name="  Ada  ")
    assert response.status_code == 201, response.text
    assert response.json()["full_name"] == "Ada"
    token = await assert_login_works(shop, address, PASSWORD)
    assert (await shop.me(token)).json()["full_name"] == "Ada"


async def test_an_empty_object_lists_every_missing_field(shop: Shop) -> None:
    body = assert_problem(await shop.client.post(USERS, json={}), 422, "validation_error")
    assert sorted(error_locs(body)) == [
        ("body", "email"),
        ("body", "full_name"),
        ("body", "password"),
    ]
    assert {error["type"] for error in body["errors"]} == {"missing"}


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (
            b"email=ada%40example.com",
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
        ),
        (b"email: ada@example.com", "text/plain", 415, "unsupported_media_type"),
        (b'{"email": "ada@example.com",', "application/json", 400, "malformed_json"),
    ],
    ids=["form", "plain-text", "broken-json"],
)
async def test_a_body_that_is_not_json_is_a_client_error(
    shop: Shop, content: bytes, content_type: str, status: int, code: str
) -> None:
    headers = {"content-type": content_type}
    response = await shop.client.post(USERS, content=content, headers=headers)
    assert_problem(response, status, code)


# --- GET / PATCH /users/me -----------------------------------------------------------------------


async def test_full_name_changes_without_current_password(shop: Shop) -> None:
    account = await shop.account()
    before = (await shop.me(account.access_token)).json()
    response = await patch_me(shop, account.access_token, {"full_name": "Grace Hopper"})
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["full_name"] == "Grace Hopper"
    assert timestamp(after["updated_at"]) > timestamp(before["updated_at"])
    assert after["created_at"] == before["created_at"]
    assert (await shop.me(account.access_token)).json() == after


@pytest.mark.parametrize(
    "change", [{"email": "new@example.com"}, {"password": NEW_PASSWORD}], ids=["email", "password"]
)
async def test_a_credential_change_needs_current_password(
    shop: Shop, change: dict[str, Any]
) -> None:
    account = await shop.account()
    response = await patch_me(shop, account.access_token, change)
    body = assert_problem(response, 422, "validation_error")
    assert any("current_password" in error["msg"] for error in body["errors"]), body["errors"]
    assert (await shop.me(account.access_token)).json()["email"] == account.email
    await assert_login_works(shop, account.email, PASSWORD)


@pytest.mark.parametrize("field", ["email", "password"])
async def test_a_wrong_current_password_is_403_and_changes_nothing(shop: Shop, field: str) -> None:
    account = await shop.account()
    new_address = new_email("new")
    change = {"email": new_address} if field == "email" else {"password": NEW_PASSWORD}
    response = await patch_me(
        shop, account.access_token, {**change, "current_password": "not the password at all"}
    )
    assert_problem(response, 403, "invalid_current_password")
    assert (await shop.me(account.access_token)).json()["email"] == account.email
    await assert_login_works(shop, account.email, PASSWORD)
    await assert_login_refused(shop, new_address, PASSWORD)
    await assert_login_refused(shop, account.email, NEW_PASSWORD)


async def test_an_email_change_with_current_password_moves_the_login(shop: Shop) -> None:
    account = await shop.account()
    new_address = new_email("moved")
    response = await patch_me(
        shop,
        account.access_token,
        {"email": new_address.upper(), "current_password": PASSWORD},
    )
    assert response.status_code == 200, response.text
    assert response.json()["email"] == new_address
    await assert_login_works(shop, new_address, PASSWORD)
    await assert_login_refused(shop, account.email, PASSWORD)


@pytest.mark.parametrize("spelling", [str.lower, str.upper], ids=["same-case", "upper-case"])
async def test_changing_to_another_users_email_is_email_taken(
    shop: Shop, spelling: Callable[[str], str]
) -> None:
    account = await shop.account()
    other = await shop.create_user()
    response = await patch_me(
        shop, account.access_token, {"email": spelling(other.email), "current_password": PASSWORD}
    )
    assert_problem(response, 409, "email_taken")
    assert (await shop.me(account.access_token)).json()["email"] == account.email
    await assert_login_works(shop, account.email, PASSWORD)


@pytest.mark.parametrize("field", ["full_name", "email", "password"])
async def test_an_explicit_null_is_rejected(shop: Shop, field: str) -> None:
    account = await shop.account()
    response = await patch_me(
        shop, account.access_token, {field: None, "current_password": PASSWORD}
    )
    assert_field_rejected(response, field)
    me = (await shop.me(account.access_token)).json()
    assert me["email"] == account.email
    assert me["full_name"] == "Test"


async def test_a_password_change_ends_every_session_of_the_user(shop: Shop) -> None:
    account = await shop.account()
    second_login = await shop.log_in(account.email)
    assert second_login.status_code == 200
    second = second_login.json()
    response = await patch_me(
        shop, account.access_token, {"password": NEW_PASSWORD, "current_password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    for access_token in (account.access_token, second["access_token"]):
        assert_problem(await shop.me(access_token), 401, "invalid_token")
    for refresh_token in (account.refresh_token, second["refresh_token"]):
        assert_problem(await shop.refresh(refresh_token), 401, "invalid_refresh_token")
    await assert_login_refused(shop, account.email, PASSWORD)
    await assert_login_works(shop, account.email, NEW_PASSWORD)


# --- No token (JWT-11) ---------------------------------------------------------------------------


async def test_me_without_a_token_is_401_with_a_bearer_challenge(shop: Shop) -> None:
    response = await shop.client.get(ME)
    assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_token_in_the_query_string_is_ignored(shop: Shop) -> None:
    account = await shop.account()
    assert (await shop.me(account.access_token)).status_code == 200
    response = await shop.client.get(ME, params={"access_token": account.access_token})
    assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"
