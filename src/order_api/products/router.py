from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from fastapi.requests import HTTPConnection

from order_api.auth.dependencies import OptionalUser, StaffUser
from order_api.config import CurrencyDep, shop_currency
from order_api.platform.adapters import CacheDep
from order_api.platform.db import DatabaseReader, ReaderDep, SessionDep, request_reader
from order_api.platform.errors import problem_responses
from order_api.platform.http import UniqueKeysRoute
from order_api.products import service
from order_api.products.schemas import (
    PopularProduct,
    ProductCreate,
    ProductPage,
    ProductQuery,
    ProductRead,
    ProductUpdate,
)

router = APIRouter(prefix="/api/v1/products", tags=["products"], route_class=UniqueKeysRoute)


# Public, and a token is welcome (staff then see inactive products): OpenAPI's "optional auth".
OPTIONAL_AUTH: dict[str, Any] = {"security": [{}, {"OAuth2PasswordBearer": []}]}


@dataclass(frozen=True)
class CatalogueView:
    """What a public catalogue read needs, as one dependency: the reader, the shop's currency,
    and whether the caller is staff, who see inactive products too."""

    reader: DatabaseReader
    currency: str
    sees_inactive: bool


async def catalogue_view(connection: HTTPConnection, caller: OptionalUser) -> CatalogueView:
    # Providers called, not declared: FastAPI solves each declared one (~8 µs) on every read.
    reader, currency = await request_reader(connection), await shop_currency(connection)
    return CatalogueView(reader, currency, caller is not None and caller.is_staff)


CatalogueViewDep = Annotated[CatalogueView, Depends(catalogue_view)]


@router.get("", openapi_extra=OPTIONAL_AUTH)
async def list_products(
    view: CatalogueViewDep, query: Annotated[ProductQuery, Query()]
) -> ProductPage:
    """Products by name; inactive ones only for staff. `q` matches part of the name."""
    products, total = await service.list_products(view.reader, query, view.sees_inactive)
    items = [ProductRead.from_row(product, view.currency) for product in products]
    return ProductPage(items=items, total=total, page=query.page, page_size=query.page_size)


@router.get("/popular")
async def popular(
    reader: ReaderDep, cache: CacheDep, currency: CurrencyDep
) -> list[PopularProduct]:
    """The ten best sellers by units ordered (cancelled orders excluded); up to a minute old."""
    return await service.popular_products(reader, cache, currency)


# `:uuid`: "popular" is no id, so `PATCH /popular` is a 405 rather than a call with a bad id.
@router.get("/{product_id:uuid}", responses=problem_responses(404), openapi_extra=OPTIONAL_AUTH)
async def read_product(view: CatalogueViewDep, product_id: uuid.UUID) -> ProductRead:
    product = await service.get_product(view.reader, product_id, view.sees_inactive)
    return ProductRead.from_row(product, view.currency)


@router.post("", status_code=status.HTTP_201_CREATED, responses=problem_responses(401, 403))
async def create_product(
    session: SessionDep, cache: CacheDep, currency: CurrencyDep, _: StaffUser, body: ProductCreate
) -> ProductRead:
    return ProductRead.of(await service.create_product(session, cache, body), currency)


@router.patch("/{product_id:uuid}", responses=problem_responses(401, 403, 404))
async def update_product(
    session: SessionDep,
    cache: CacheDep,
    currency: CurrencyDep,
    _: StaffUser,
    product_id: uuid.UUID,
    body: ProductUpdate,
) -> ProductRead:
    """Change name, description, price, stock or active flag. Past orders keep their prices."""
    product = await service.update_product(session, cache, product_id, body)
    return ProductRead.of(product, currency)


@router.delete(
    "/{product_id:uuid}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404),
)
async def deactivate_product(
    session: SessionDep, cache: CacheDep, _: StaffUser, product_id: uuid.UUID
) -> None:
    """Take a product off sale (it stays, for the orders that name it)."""
    await service.deactivate_product(session, cache, product_id)
