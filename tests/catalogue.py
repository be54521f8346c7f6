"""Catalogue helpers for tests: products made through the API, orders placed, stock read back."""

from __future__ import annotations

import uuid
from typing import Any

import httpx2
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from order_api.products.models import Product
from tests.accounts import Shop

PRODUCTS = "/api/v1/products"
ORDERS = "/api/v1/orders"
PAYMENT_METHOD_ID = "pm_test"


async def create_product(
    shop: Shop, staff_headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    """A product created through the API (201 asserted); `fields` override the defaults."""
    body = {"name": f"Product {uuid.uuid4().hex[:8]}", "price_cents": 1999, "stock": 10, **fields}
    response = await shop.client.post(PRODUCTS, json=body, headers=staff_headers)
    assert response.status_code == 201, response.text
    product: dict[str, Any] = response.json()
    return product


async def order(
    shop: Shop, headers: dict[str, str], items: list[tuple[str, int]], **extra: Any
) -> httpx2.Response:
    """POST /orders with one line per (product id, quantity); `extra` adds or replaces fields."""
    lines = [{"product_id": product_id, "quantity": quantity} for product_id, quantity in items]
    body = {"items": lines, "payment_method_id": PAYMENT_METHOD_ID, **extra}
    return await shop.client.post(ORDERS, json=body, headers=headers)


async def submit_order(
    shop: Shop, headers: dict[str, str], items: list[dict[str, Any]], **extra: Any
) -> httpx2.Response:
    """POST /orders with the lines as given (dicts); `extra` adds or replaces fields."""
    body = {"items": items, "payment_method_id": PAYMENT_METHOD_ID, **extra}
    return await shop.client.post(ORDERS, json=body, headers=headers)


def sessions(shop: Shop) -> async_sessionmaker[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = shop.app.state.sessionmaker
    return sessionmaker


async def product_row(shop: Shop, product_id: str) -> Product:
    """The product as stored, read from the database rather than through the API."""
    async with sessions(shop)() as session:
        product = await session.get(Product, uuid.UUID(product_id))
    assert product is not None, f"no product {product_id} in the database"
    return product


async def stock_of(shop: Shop, product_id: str) -> int:
    return (await product_row(shop, product_id)).stock


async def units_sold(shop: Shop, product_id: str) -> int:
    return (await product_row(shop, product_id)).units_sold
