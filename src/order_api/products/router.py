from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status

from order_api.adapters.cache import Cache
from order_api.auth.dependencies import OptionalRole, StaffUser
from order_api.compiled_select import ReaderDep
from order_api.config import CurrencyDep
from order_api.db import SessionDep
from order_api.errors import problem_responses
from order_api.json_bodies import UniqueKeysRoute
from order_api.products import service
from order_api.products.schemas import (
    PopularProduct,
    ProductCreate,
    ProductPage,
    ProductQuery,
    ProductRead,
    ProductUpdate,
)
from order_api.users.models import Role

router = APIRouter(prefix="/api/v1/products", tags=["products"], route_class=UniqueKeysRoute)


async def get_cache(request: Request) -> Cache:
    cache: Cache = request.app.state.cache
    return cache


CacheDep = Annotated[Cache, Depends(get_cache)]
# Public, and a token is welcome (staff then see inactive products): OpenAPI's "optional auth".
OPTIONAL_AUTH: dict[str, Any] = {"security": [{}, {"OAuth2PasswordBearer": []}]}


def sees_inactive(role: Role | None) -> bool:
    return role in (Role.STAFF, Role.ADMIN)


@router.get("", openapi_extra=OPTIONAL_AUTH)
async def list_products(
    reader: ReaderDep,
    currency: CurrencyDep,
    role: OptionalRole,
    query: Annotated[ProductQuery, Query()],
) -> ProductPage:
    """Products by name; inactive ones only for staff. `q` matches part of the name."""
    products, total = await service.list_products(reader, query, sees_inactive(role))
    items = [ProductRead.from_row(product, currency) for product in products]
    return ProductPage(items=items, total=total, page=query.page, page_size=query.page_size)


@router.get("/popular")
async def popular(
    reader: ReaderDep, cache: CacheDep, currency: CurrencyDep
) -> list[PopularProduct]:
    """The ten best sellers by units ordered (cancelled orders excluded); up to a minute old."""
    return await service.popular_products(reader, cache, currency)


# `:uuid`: "popular" is no id, so `PATCH /popular` is a 405 rather than a call with a bad id.
@router.get("/{product_id:uuid}", responses=problem_responses(404), openapi_extra=OPTIONAL_AUTH)
async def read_product(
    reader: ReaderDep, currency: CurrencyDep, role: OptionalRole, product_id: uuid.UUID
) -> ProductRead:
    product = await service.get_product(reader, product_id, sees_inactive(role))
    return ProductRead.from_row(product, currency)


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
