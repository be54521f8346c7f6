"""The bench's data: the schema from `order-api migrate`, products inserted in bulk with
SQLAlchemy Core on order_api's own model, and customers made through the HTTP API."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
from sqlalchemy import insert, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench.tools import SetupError
from order_api.products.models import Product

PRODUCT_COUNT = 10_000
# So that no order is ever refused for stock, however long the bench runs.
PRODUCT_STOCK = 1_000_000_000
READER_ORDER_COUNT = 100
PASSWORD = "a bench passphrase 42"  # noqa: S105 - throw-away accounts in a scratch database
PAYMENT_METHOD = "pm_card_visa"
ADJECTIVES = ("Roasted", "Organic", "Single-origin", "Decaf", "Dark", "Light", "Spiced", "Fresh")
NOUNS = ("espresso beans", "filter coffee", "green tea", "cocoa", "chai", "mug", "grinder")
HTTP_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Customer:
    email: str
    token: str


def migrate(environment: Mapping[str, str], workdir: Path) -> None:
    """`order-api migrate`, the command an operator runs, with the bench's settings."""
    command = [str(Path(sys.executable).parent / "order-api"), "migrate"]
    done = subprocess.run(  # noqa: S603 - our own command
        command, env=dict(environment), cwd=workdir, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SetupError(f"order-api migrate failed: {done.stderr.strip()[-500:]}")


def product_rows(seed: int) -> list[dict[str, Any]]:
    """10,000 active products with varied names and prices, the same ones in every database."""
    generator = random.Random(seed)  # noqa: S311 - sample data, not secrets
    now = datetime.now(UTC)
    return [
        {
            "id": uuid.UUID(int=generator.getrandbits(128), version=4),
            "name": f"{generator.choice(ADJECTIVES)} {generator.choice(NOUNS)} #{number:05d}",
            "description": f"Bench product {number}.",
            "price_cents": generator.randint(50, 250_000),
            "stock": PRODUCT_STOCK,
            "units_sold": 0,
            "is_active": True,
            "created_at": now,
            "updated_at": now,
        }
        for number in range(1, PRODUCT_COUNT + 1)
    ]


async def _insert_products(database_url: str, rows: list[dict[str, Any]]) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(Product), rows)
    finally:
        await engine.dispose()


def insert_products(database_url: str, rows: list[dict[str, Any]]) -> None:
    url = make_url(database_url)
    driver = "postgresql+asyncpg" if url.drivername.startswith("postgres") else "sqlite+aiosqlite"
    asyncio.run(_insert_products(url.set(drivername=driver).render_as_string(False), rows))


def write_ids_file(rows: list[dict[str, Any]], path: Path) -> None:
    """One product id a line: wrk's scripts read them in `init`."""
    path.write_text("".join(f"{row['id']}\n" for row in rows))


def sign_up(base_url: str, email: str, full_name: str) -> Customer:
    """Register, then log in, through the running service's HTTP API."""
    account = {"email": email, "password": PASSWORD, "full_name": full_name}
    registered = httpx2.post(f"{base_url}/api/v1/users", json=account, timeout=HTTP_TIMEOUT_SECONDS)
    if registered.status_code != 201:
        raise SetupError(f"registering {email} failed: {registered.status_code} {registered.text}")
    form = {"username": email, "password": PASSWORD}
    logged_in = httpx2.post(
        f"{base_url}/api/v1/auth/token", data=form, timeout=HTTP_TIMEOUT_SECONDS
    )
    if logged_in.status_code != 200:
        raise SetupError(f"logging in {email} failed: {logged_in.status_code} {logged_in.text}")
    return Customer(email=email, token=str(logged_in.json()["access_token"]))


def place_reader_orders(base_url: str, reader: Customer, rows: list[dict[str, Any]]) -> None:
    """The reader's order history, placed like any customer's, so lists have 100 to page."""
    generator = random.Random(len(rows))  # noqa: S311 - sample data, not secrets
    headers = {"Authorization": f"Bearer {reader.token}"}
    with httpx2.Client(base_url=base_url, headers=headers, timeout=HTTP_TIMEOUT_SECONDS) as client:
        for number in range(READER_ORDER_COUNT):
            products = generator.sample(rows, generator.randint(1, 3))
            items = [{"product_id": str(row["id"]), "quantity": 1} for row in products]
            body = {"items": items, "payment_method_id": PAYMENT_METHOD}
            placed = client.post(
                "/api/v1/orders", json=body, headers={"Idempotency-Key": f"reader-{number}"}
            )
            if placed.status_code != 201:
                raise SetupError(f"a reader order failed: {placed.status_code} {placed.text}")
