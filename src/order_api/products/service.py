"""The catalogue's rules: listing, changes by staff, stock reserved and released for orders."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from order_api.platform.adapters import Cache
from order_api.platform.db import DatabaseReader, Row
from order_api.platform.errors import Conflict, NotFound, ValidationFailed
from order_api.products import repository
from order_api.products.models import Product
from order_api.products.schemas import (
    PopularProduct,
    ProductCreate,
    ProductQuery,
    ProductRead,
    ProductUpdate,
)

POPULAR_CACHE_KEY = "products:popular"
POPULAR_TTL_SECONDS = 60
POPULAR_LIMIT = 10
_POPULAR = TypeAdapter(list[PopularProduct])
_pending: set[asyncio.Task[None]] = set()  # the event loop keeps only weak references to tasks


class ProductNotFound(NotFound):
    default_detail = "No product with this id."


class ProductUnavailable(ValidationFailed):
    code, title = "product_unavailable", "Product unavailable"


class InsufficientStock(Conflict):
    code, title = "insufficient_stock", "Insufficient stock"


@dataclass(frozen=True)
class ReservedLine:
    product_id: uuid.UUID
    name: str
    unit_price_cents: int
    quantity: int


async def list_products(
    reader: DatabaseReader, query: ProductQuery, include_inactive: bool
) -> tuple[list[Row], int]:
    """One page by name, and how many match on every page: two statements."""
    total = await repository.count_products(
        reader, include_inactive=include_inactive, name_part=query.q
    )
    products = await repository.product_page(
        reader,
        include_inactive=include_inactive,
        name_part=query.q,
        offset=query.offset,
        limit=query.page_size,
    )
    return products, total


async def get_product(reader: DatabaseReader, product_id: uuid.UUID, include_inactive: bool) -> Row:
    product = await repository.product_row(reader, product_id)
    if product is None or not (product["is_active"] or include_inactive):
        raise ProductNotFound()
    return product


async def create_product(session: AsyncSession, cache: Cache, data: ProductCreate) -> Product:
    now = datetime.now(UTC)
    product = Product(id=uuid.uuid4(), **data.model_dump(), units_sold=0, created_at=now)
    product.updated_at = now
    await repository.add_product(session, product)
    await forget_popular(session, cache)
    return product


async def update_product(
    session: AsyncSession, cache: Cache, product_id: uuid.UUID, data: ProductUpdate
) -> Product:
    product = await _locked(session, product_id)
    for name, value in data.model_dump(exclude_unset=True).items():
        setattr(product, name, value)
    product.updated_at = datetime.now(UTC)
    await repository.write_changes(session)
    await forget_popular(session, cache)
    return product


async def deactivate_product(session: AsyncSession, cache: Cache, product_id: uuid.UUID) -> None:
    """Taken off sale; kept, because past orders name it."""
    product = await _locked(session, product_id)
    product.is_active = False
    product.updated_at = datetime.now(UTC)
    await repository.write_changes(session)
    await forget_popular(session, cache)


async def forget_popular(session: AsyncSession, cache: Cache) -> None:
    """Drop the cached top sellers now, and again once this change commits: a read that lands
    between the two cannot put the old list back for a whole TTL."""
    await cache.delete(POPULAR_CACHE_KEY)
    loop = asyncio.get_running_loop()

    def forget_again(_: Session) -> None:
        task = loop.create_task(cache.delete(POPULAR_CACHE_KEY))
        _pending.add(task)
        task.add_done_callback(_pending.discard)

    event.listen(session.sync_session, "after_commit", forget_again, once=True)


async def popular_products(
    reader: DatabaseReader, cache: Cache, currency: str
) -> list[PopularProduct]:
    """The top sellers by units in orders that are not cancelled, cached for a minute."""
    cached = await cache.get(POPULAR_CACHE_KEY)
    if cached is not None:
        try:
            return _POPULAR.validate_json(cached)
        except ValidationError:
            pass  # written by another version of the service: read afresh and overwrite it
    rows = await repository.top_sellers(reader, POPULAR_LIMIT)
    popular = [
        # ProductRead ignores the extra `units_sold`, as it ignores any column it does not show.
        PopularProduct(product=ProductRead.from_row(row, currency), units_sold=row["units_sold"])
        for row in rows
    ]
    await cache.set(POPULAR_CACHE_KEY, _POPULAR.dump_json(popular), POPULAR_TTL_SECONDS)
    return popular


async def reserve_stock(
    session: AsyncSession, quantities: dict[uuid.UUID, int]
) -> list[ReservedLine]:
    """Take each quantity from stock with one conditional UPDATE, in product-id order.

    The fixed order means two orders sharing products lock them in the same order: no deadlock.
    """
    reserved = []
    for product_id in sorted(quantities):
        quantity = quantities[product_id]
        taken = await repository.take_stock(session, product_id, quantity)
        if taken is None:
            await _explain_refusal(session, product_id, quantity)
        else:
            name, price_cents = taken
            reserved.append(ReservedLine(product_id, name, price_cents, quantity))
    return reserved


async def release_stock(session: AsyncSession, quantities: dict[uuid.UUID, int]) -> None:
    """Give a cancelled order's quantities back, in product-id order like `reserve_stock`."""
    for product_id in sorted(quantities):
        await repository.return_stock(session, product_id, quantities[product_id])


async def _locked(session: AsyncSession, product_id: uuid.UUID) -> Product:
    """The product as committed, its row locked: a change waits for orders reserving it, and an
    unchanged-looking value (stock 5 while an order takes one) is still written."""
    product = await repository.locked_product(session, product_id)
    if product is None:
        raise ProductNotFound()
    return product


async def _explain_refusal(session: AsyncSession, product_id: uuid.UUID, quantity: int) -> None:
    product = await repository.committed_product(session, product_id)
    extra = {"product_id": str(product_id)}
    if product is None or not product.is_active:
        raise ProductUnavailable(
            f"Product {product_id} does not exist or is not for sale.", extra=extra
        )
    raise InsufficientStock(
        f"Only {product.stock} of {product.name!r} ({product_id}) left; {quantity} requested.",
        extra={**extra, "available": product.stock},
    )
