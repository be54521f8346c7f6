from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool
from pydantic.json_schema import SkipJsonSchema

from order_api.platform.db import Page, PageQuery
from order_api.platform.fields import AS_INTEGER, Paragraphs, PartialUpdate, SearchText, SingleLine
from order_api.products.models import Product

MAX_PRICE_CENTS = 100_000_000  # one million in the shop's currency
MAX_STOCK = 1_000_000

PriceCents = Annotated[
    int,
    Field(ge=0, le=MAX_PRICE_CENTS, strict=True, description="Minor units (cents)."),
    AS_INTEGER,
]
Stock = Annotated[int, Field(ge=0, le=MAX_STOCK, strict=True), AS_INTEGER]


class ProductCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SingleLine = Field(examples=["Espresso beans, 1 kg"])
    description: Paragraphs = ""
    price_cents: PriceCents = Field(examples=[1999])
    stock: Stock = Field(examples=[25])
    is_active: StrictBool = True


class ProductUpdate(PartialUpdate):
    name: SingleLine | SkipJsonSchema[None] = None
    description: Paragraphs | SkipJsonSchema[None] = None
    price_cents: PriceCents | SkipJsonSchema[None] = None
    stock: Stock | SkipJsonSchema[None] = None
    is_active: StrictBool | SkipJsonSchema[None] = None


class ProductRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str
    price_cents: int
    currency: str = Field(description="ISO 4217; one currency per shop.", examples=["EUR"])
    stock: int
    is_active: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any], currency: str) -> ProductRead:
        return cls.model_validate({**row, "currency": currency})

    @classmethod
    def of(cls, product: Product, currency: str) -> ProductRead:
        return cls(
            id=product.id,
            name=product.name,
            description=product.description,
            price_cents=product.price_cents,
            currency=currency,
            stock=product.stock,
            is_active=product.is_active,
            created_at=product.created_at,
            updated_at=product.updated_at,
        )


class PopularProduct(BaseModel):
    product: ProductRead
    units_sold: int = Field(description="Units in orders that are not cancelled.")


class ProductPage(Page[ProductRead]):
    pass


class ProductQuery(PageQuery):
    q: SearchText | None = Field(default=None, description="Part of the name, any letter case.")
