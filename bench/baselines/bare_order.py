"""Baseline: FastAPI + asyncpg placing an order with order-api's own statements and transactions.

The statements are bench/order_statements.py (captured from the service); the caller is learned
from the bearer JWT with PyJWT, as the service does, and read from `users` like its auth does.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel

from bench import order_statements as sql
from bench.baselines.database import database, pool_lifespan

CURRENCY = "EUR"
IDEMPOTENCY_LIFETIME = timedelta(hours=24)
JWT_AUDIENCE = "order-api"

app = FastAPI(lifespan=pool_lifespan)


class OrderItem(BaseModel):
    product_id: uuid.UUID
    quantity: int


class OrderCreate(BaseModel):
    items: list[OrderItem]
    payment_method_id: str


class Customer(BaseModel):
    id: uuid.UUID
    email: str
    full_name: str


def customer_id_of(authorization: str) -> uuid.UUID:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        raise HTTPException(status_code=401)
    try:
        claims = jwt.decode(
            token, os.environ["SECRET_KEY"], algorithms=["HS256"], audience=JWT_AUDIENCE
        )
        return uuid.UUID(claims["sub"])
    except (jwt.PyJWTError, KeyError, ValueError):
        raise HTTPException(status_code=401) from None


async def claim(
    connection: PoolConnectionProxy[Record],
    user_id: uuid.UUID,
    key: str,
    request_hash: str,
    now: datetime,
) -> Customer:
    """Transaction 1: the caller's row, then this key claimed."""
    async with connection.transaction():
        user = await connection.fetchrow(sql.SELECT_USER, user_id)
        if user is None or not user["is_active"]:
            raise HTTPException(status_code=401)
        expires_at = now + IDEMPOTENCY_LIFETIME
        claimed = await connection.fetchval(
            sql.CLAIM_IDEMPOTENCY_KEY,
            uuid.uuid4(),
            user_id,
            key,
            request_hash,
            None,
            None,
            now,
            expires_at,
            None,
            now,
        )
        if claimed is None:
            raise HTTPException(status_code=409)  # every bench request sends a fresh key
    return Customer(id=user["id"], email=user["email"], full_name=user["full_name"])


def outbox_rows(order: dict[str, Any], customer: Customer) -> list[tuple[str, str]]:
    event = {
        "order_id": str(order["id"]),
        "customer_id": str(customer.id),
        "status": "PENDING",
        "previous_status": None,
        "at": order["created_at"].isoformat(),
    }
    email = {
        "template": "order_confirmation",
        "to": customer.email,
        "context": {
            "full_name": customer.full_name,
            "order_number": str(order["id"])[:8].upper(),
            "status": "PENDING",
            "lines": [
                {"quantity": line["quantity"], "name": line["product_name"]}
                for line in order["lines"]
            ],
            "total": f"{order['total_cents'] // 100}.{order['total_cents'] % 100:02d} EUR",
        },
    }
    return [("order.event", json.dumps(event)), ("email", json.dumps(email))]


async def place(
    connection: PoolConnectionProxy[Record],
    customer: Customer,
    key: str,
    body: OrderCreate,
    claimed_at: datetime,
) -> dict[str, Any]:
    """Transaction 2: stock reserved line by line, the order and its lines, the outbox."""
    async with connection.transaction():
        lines: list[dict[str, Any]] = []
        for item in body.items:
            product = await connection.fetchrow(sql.RESERVE_STOCK, item.quantity, item.product_id)
            if product is None:
                raise HTTPException(status_code=409)
            lines.append(
                {
                    "product_id": item.product_id,
                    "product_name": product["name"],
                    "unit_price_cents": product["price_cents"],
                    "quantity": item.quantity,
                }
            )
        now = datetime.now(UTC)
        order: dict[str, Any] = {
            "id": uuid.uuid4(),
            "customer_id": customer.id,
            "status": "PENDING",
            "lines": lines,
            "total_cents": sum(line["unit_price_cents"] * line["quantity"] for line in lines),
            "currency": CURRENCY,
            "payment_method_id": body.payment_method_id,
            "created_at": now,
            "updated_at": now,
        }
        await connection.execute(
            sql.INSERT_ORDER,
            order["id"],
            customer.id,
            "PENDING",
            order["total_cents"],
            CURRENCY,
            body.payment_method_id,
            now,
            now,
        )
        line_values = [
            value
            for position, line in enumerate(lines)
            for value in (
                uuid.uuid4(),
                order["id"],
                position,
                line["product_id"],
                line["product_name"],
                line["unit_price_cents"],
                line["quantity"],
            )
        ]
        await connection.execute(sql.insert_order_lines(len(lines)), *line_values)
        await connection.execute(
            sql.INSERT_ORDER_EVENT, uuid.uuid4(), order["id"], None, "PENDING", customer.id, now
        )
        await connection.executemany(
            sql.INSERT_OUTBOX_MESSAGE,
            [
                (uuid.uuid4(), kind, payload, "pending", 0, now, None, None, now, None)
                for kind, payload in outbox_rows(order, customer)
            ],
        )
        response_body = json.dumps(order, default=str)
        await connection.fetchrow(
            sql.STORE_IDEMPOTENT_RESPONSE, 201, response_body, customer.id, key, claimed_at
        )
    return order


@app.post("/api/v1/orders", status_code=201)
async def place_order(
    body: OrderCreate,
    authorization: Annotated[str, Header()],
    idempotency_key: Annotated[str, Header()],
) -> dict[str, Any]:
    user_id = customer_id_of(authorization)
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    request_hash = hashlib.sha256(canonical.encode()).hexdigest()
    now = datetime.now(UTC)
    async with database.get().acquire() as connection:
        customer = await claim(connection, user_id, idempotency_key, request_hash, now)
        return await place(connection, customer, idempotency_key, body, now)
