"""Accounts for tests: registered through the API, or with a role through the users service."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx2
from fastapi import FastAPI

from order_api.users import service as users_service
from order_api.users.models import Role, User
from order_api.users.schemas import UserCreate

PASSWORD = "correct horse battery staple"


@dataclass
class Account:
    id: uuid.UUID
    email: str
    password: str
    role: Role
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def new_email(prefix: str = "user") -> str:
    return f"{prefix}-{secrets.token_hex(4)}@example.com"


@dataclass
class Shop:
    """One running app and a client over ASGI to it."""

    app: FastAPI
    client: httpx2.AsyncClient

    async def register(self, **fields: Any) -> httpx2.Response:
        body = {"email": new_email(), "password": PASSWORD, "full_name": "Ada Lovelace", **fields}
        return await self.client.post("/api/v1/users", json=body)

    async def log_in(self, email: str, password: str = PASSWORD) -> httpx2.Response:
        form = {"username": email, "password": password}
        return await self.client.post("/api/v1/auth/token", data=form)

    async def create_user(self, role: Role = Role.CUSTOMER, email: str | None = None) -> User:
        """A user with any role, made by the same service function the API and CLI use."""
        data = UserCreate(email=email or new_email(role.value), password=PASSWORD, full_name="Test")
        async with self.app.state.sessionmaker() as session:
            user = await users_service.register_user(
                session, self.app.state.passwords, data, role=role
            )
            await session.commit()
        return user

    async def account(self, role: Role = Role.CUSTOMER) -> Account:
        """A user of that role, logged in through the API."""
        user = await self.create_user(role)
        response = await self.log_in(user.email)
        assert response.status_code == 200, response.text
        tokens = response.json()
        return Account(
            id=user.id,
            email=user.email,
            password=PASSWORD,
            role=role,
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
        )

    async def me(self, token: str) -> httpx2.Response:
        return await self.client.get("/api/v1/users/me", headers=bearer(token))

    async def refresh(self, refresh_token: str) -> httpx2.Response:
        return await self.client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


ShopFactory = Callable[..., Awaitable[Shop]]
