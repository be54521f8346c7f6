"""The catalogue's SQL: every statement that reads or writes `products`.

Public reads are compiled once and run by the `DatabaseReader`, outside any transaction; changes
and stock run in the caller's session, inside its transaction.
"""

from __future__ import annotations

import uuid

from sqlalchemy import ColumnElement, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.platform.db import DatabaseReader, Row, Statement, transaction_connection
from order_api.products.models import Product

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
_RESERVE = Statement(
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
_PRODUCT_BY_ID = Statement(select(*PRODUCT_COLUMNS).where(Product.id == bindparam("product_id")))
_TOP_SELLERS = Statement(
    select(*PRODUCT_COLUMNS, Product.units_sold)
    .where(Product.is_active.is_(True), Product.units_sold > 0)
    .order_by(Product.units_sold.desc(), Product.name, Product.id)
    .limit(bindparam("limit"))
)
_ESCAPE = "/"
_LIKE_SPECIALS = frozenset({"%", "_", _ESCAPE})


def _listing(include_inactive: bool, searching: bool) -> tuple[Statement, Statement]:
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
    return Statement(count), Statement(page)


_LISTINGS = {
    (inactive, searching): _listing(inactive, searching)
    for inactive in (False, True)
    for searching in (False, True)
}


def _name_filter(name_part: str | None) -> dict[str, str]:
    """`%part%` for LIKE, any case, with LIKE's own characters in `name_part` matched literally."""
    if name_part is None:
        return {}
    escaped = "".join(
        _ESCAPE + char if char in _LIKE_SPECIALS else char for char in name_part.lower()
    )
    return {"pattern": f"%{escaped}%"}


async def count_products(
    reader: DatabaseReader, *, include_inactive: bool, name_part: str | None
) -> int:
    """How many products a listing holds, on every page; `name_part` matches part of the name."""
    count, _ = _LISTINGS[include_inactive, name_part is not None]
    total = await reader.fetch_value(count, **_name_filter(name_part))
    return int(total or 0)


async def product_page(
    reader: DatabaseReader,
    *,
    include_inactive: bool,
    name_part: str | None,
    offset: int,
    limit: int,
) -> list[Row]:
    """One page of a listing, by name."""
    _, page = _LISTINGS[include_inactive, name_part is not None]
    parameters = _name_filter(name_part)
    return await reader.fetch_all(page, **parameters, offset=offset, limit=limit)


async def product_row(reader: DatabaseReader, product_id: uuid.UUID) -> Row | None:
    """The product's PRODUCT_COLUMNS, active or not."""
    return await reader.fetch_one(_PRODUCT_BY_ID, product_id=product_id)


async def top_sellers(reader: DatabaseReader, limit: int) -> list[Row]:
    """Active products by units sold, most first; PRODUCT_COLUMNS and `units_sold`."""
    return await reader.fetch_all(_TOP_SELLERS, limit=limit)


async def any_product(session: AsyncSession) -> bool:
    return await session.scalar(select(Product.id).limit(1)) is not None


async def add_product(session: AsyncSession, product: Product) -> None:
    session.add(product)
    await session.flush()


async def write_changes(session: AsyncSession) -> None:
    """Write the changes made to the products this session loaded."""
    await session.flush()


async def locked_product(session: AsyncSession, product_id: uuid.UUID) -> Product | None:
    """The product as committed, its row locked until the transaction ends."""
    return await session.scalar(
        select(Product)
        .where(Product.id == product_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def committed_product(session: AsyncSession, product_id: uuid.UUID) -> Product | None:
    """The product as the transaction now sees it, not as the session last loaded it."""
    return await session.get(Product, product_id, populate_existing=True)


async def take_stock(
    session: AsyncSession, product_id: uuid.UUID, quantity: int
) -> tuple[str, int] | None:
    """Take `quantity` from an active product's stock in one conditional UPDATE, counting it as
    sold; the product's name and price, or None when it is not for sale or has too few left."""
    parameters = {"reserved_id": product_id, "reserved_quantity": quantity}
    row = await _RESERVE.first(await transaction_connection(session), parameters)
    return None if row is None else (row["name"], row["price_cents"])


async def return_stock(session: AsyncSession, product_id: uuid.UUID, quantity: int) -> None:
    """Put `quantity` back on the shelf, no longer counted as sold."""
    await session.execute(
        update(Product)
        .where(Product.id == product_id)
        .values(stock=Product.stock + quantity, units_sold=Product.units_sold - quantity)
        .execution_options(synchronize_session=False)
    )
