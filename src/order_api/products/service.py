"""The catalogue's rules: listing, changes by staff, stock reserved and released for orders."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import ColumnElement, bindparam, event, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from order_api.platform.adapters.cache import Cache
from order_api.platform.db.compiled_select import CompiledSelect, DatabaseReader, Row
from order_api.platform.db.compiled_writes import CompiledWrite
from order_api.platform.db.engine import transaction_connection
from order_api.platform.errors import Conflict, NotFound, ValidationFailed
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
# What a reader sees of a product (ProductRead, but the shop's currency).
PRODUCT_COLUMNS = (
    Product.id,
    Product.name,
    Product.description,
    Product.price_cents,
    Product.stock,
    Product.is_active,
    Product.created_at,
    Product.updated_at,
)
# Built once: building an UPDATE per call cost more than running it (~250 µs, measured). Core,
# not the ORM's bulk UPDATE: nothing in the session mirrors these rows.
_RESERVE = CompiledWrite(
    update(Product)
    .where(
        Product.id == bindparam("reserved_id"),
        Product.is_active.is_(True),
        Product.stock >= bindparam("reserved_quantity"),
    )
    .values(
        stock=Product.stock - bindparam("reserved_quantity"),
        units_sold=Product.units_sold + bindparam("reserved_quantity"),
    )
    .returning(Product.name, Product.price_cents)
)
_PRODUCT_BY_ID = CompiledSelect(
    select(*PRODUCT_COLUMNS).where(Product.id == bindparam("product_id"))
)
_POPULAR_SELECT = CompiledSelect(
    select(*PRODUCT_COLUMNS, Product.units_sold)
    .where(Product.is_active.is_(True), Product.units_sold > 0)
    .order_by(Product.units_sold.desc(), Product.name, Product.id)
    .limit(POPULAR_LIMIT)
)
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
    """One page by name, and how many match on every page: two compiled statements."""
    count, page = _LISTINGS[include_inactive, query.q is not None]
    parameters = {"pattern": _contains_pattern(query.q)} if query.q is not None else {}
    total = await reader.fetch_value(count, **parameters)
    offset, limit = query.offset, query.page_size
    products = await reader.fetch_all(page, **parameters, offset=offset, limit=limit)
    return products, total or 0


def _listing(include_inactive: bool, searching: bool) -> tuple[CompiledSelect, CompiledSelect]:
    """The count and the page of one kind of listing, built and compiled once."""
    conditions: list[ColumnElement[bool]] = []
    if not include_inactive:
        conditions.append(Product.is_active.is_(True))
    if searching:
        conditions.append(func.lower(Product.name).like(bindparam("pattern"), escape=_ESCAPE))
    count = select(func.count()).select_from(Product).where(*conditions)
    page = (
        select(*PRODUCT_COLUMNS)
        .where(*conditions)
        .order_by(Product.name, Product.id)
        .offset(bindparam("offset"))
        .limit(bindparam("limit"))
    )
    return CompiledSelect(count), CompiledSelect(page)


def _contains_pattern(text: str) -> str:
    """`%text%` for LIKE, any case, with LIKE's own characters in `text` matched literally."""
    escaped = "".join(_ESCAPE + char if char in _LIKE_SPECIALS else char for char in text.lower())
    return f"%{escaped}%"


_ESCAPE = "/"
_LIKE_SPECIALS = frozenset({"%", "_", _ESCAPE})
_LISTINGS = {
    (inactive, searching): _listing(inactive, searching)
    for inactive in (False, True)
    for searching in (False, True)
}


async def get_product(reader: DatabaseReader, product_id: uuid.UUID, include_inactive: bool) -> Row:
    product = await reader.fetch_one(_PRODUCT_BY_ID, product_id=product_id)
    if product is None or not (product["is_active"] or include_inactive):
        raise ProductNotFound()
    return product


async def create_product(session: AsyncSession, cache: Cache, data: ProductCreate) -> Product:
    now = datetime.now(UTC)
    product = Product(id=uuid.uuid4(), **data.model_dump(), units_sold=0, created_at=now)
    product.updated_at = now
    session.add(product)
    await session.flush()
    await forget_popular(session, cache)
    return product


async def update_product(
    session: AsyncSession, cache: Cache, product_id: uuid.UUID, data: ProductUpdate
) -> Product:
    product = await _locked(session, product_id)
    for name, value in data.model_dump(exclude_unset=True).items():
        setattr(product, name, value)
    product.updated_at = datetime.now(UTC)
    await session.flush()
    await forget_popular(session, cache)
    return product


async def deactivate_product(session: AsyncSession, cache: Cache, product_id: uuid.UUID) -> None:
    """Taken off sale; kept, because past orders name it."""
    product = await _locked(session, product_id)
    product.is_active = False
    product.updated_at = datetime.now(UTC)
    await session.flush()
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
    rows = await reader.fetch_all(_POPULAR_SELECT)
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
        parameters = {"reserved_id": product_id, "reserved_quantity": quantity}
        row = await _RESERVE.first(await transaction_connection(session), parameters)
        if row is None:
            await _explain_refusal(session, product_id, quantity)
        else:
            reserved.append(ReservedLine(product_id, row["name"], row["price_cents"], quantity))
    return reserved


async def release_stock(session: AsyncSession, quantities: dict[uuid.UUID, int]) -> None:
    """Give a cancelled order's quantities back, in product-id order like `reserve_stock`."""
    for product_id in sorted(quantities):
        quantity = quantities[product_id]
        await session.execute(
            update(Product)
            .where(Product.id == product_id)
            .values(stock=Product.stock + quantity, units_sold=Product.units_sold - quantity)
            .execution_options(synchronize_session=False)
        )


async def _locked(session: AsyncSession, product_id: uuid.UUID) -> Product:
    """The product as committed, its row locked: a change waits for orders reserving it, and an
    unchanged-looking value (stock 5 while an order takes one) is still written."""
    product = await session.scalar(
        select(Product)
        .where(Product.id == product_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if product is None:
        raise ProductNotFound()
    return product


async def _explain_refusal(session: AsyncSession, product_id: uuid.UUID, quantity: int) -> None:
    product = await session.get(Product, product_id, populate_existing=True)
    extra = {"product_id": str(product_id)}
    if product is None or not product.is_active:
        raise ProductUnavailable(
            f"Product {product_id} does not exist or is not for sale.", extra=extra
        )
    raise InsufficientStock(
        f"Only {product.stock} of {product.name!r} ({product_id}) left; {quantity} requested.",
        extra={**extra, "available": product.stock},
    )
