from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from order_api.orders.models import OrderStatus
from order_api.platform.db import Page, PageQuery
from order_api.platform.fields import AS_INTEGER
from order_api.products.schemas import PriceCents

MAX_LINES = 50
MAX_QUANTITY = 100

PaymentMethodId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$"),
    Field(description="The payment provider's id for the customer's payment method."),
]
IdempotencyKey = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[!-~]+$")
]


class OrderItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: uuid.UUID
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY, strict=True), AS_INTEGER]
    unit_price_cents: PriceCents | None = Field(
        default=None,
        description="The price the customer saw; the order is refused (409) if it changed.",
    )


class OrderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[OrderItem] = Field(min_length=1, max_length=MAX_LINES)
    payment_method_id: PaymentMethodId = Field(examples=["pm_card_visa"])

    @field_validator("items")
    @classmethod
    def one_line_per_product(cls, items: list[OrderItem]) -> list[OrderItem]:
        if len({item.product_id for item in items}) != len(items):
            raise ValueError("each product may appear once; raise its quantity instead")
        return items


class OrderLineRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    product_id: uuid.UUID
    product_name: str = Field(description="The name when the order was placed.")
    unit_price_cents: int = Field(description="The price when the order was placed.")
    quantity: int


class OrderRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    customer_id: uuid.UUID
    status: OrderStatus
    lines: list[OrderLineRead]
    total_cents: int
    currency: str
    payment_method_id: str
    created_at: datetime
    updated_at: datetime


class OrderPage(Page[OrderRead]):
    pass


class OrderQuery(PageQuery):
    status: OrderStatus | None = None
    customer_id: uuid.UUID | None = Field(
        default=None, description="Staff only; customers always see their own orders."
    )


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: OrderStatus


class OrderEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_status: OrderStatus | None = Field(description="None for the order's creation.")
    to_status: OrderStatus
    actor_id: uuid.UUID = Field(description="Who made the change: the customer or a staff member.")
    at: datetime
