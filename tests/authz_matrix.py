"""The authorization matrix (reliability.md API-12): who may call each operation, as data.

One row per operation of `/api/openapi.json`, keyed by (METHOD, path template exactly as in the
schema). A row says what each caller gets and how to build a minimal valid request for it.
tests/identity/test_authorization_matrix.py sends every row as every caller, and fails on an
operation without a row (deny by default) or a row without an operation.

To add an operation: add a row to MATRIX below. Pick an access profile (or spell one out with
`Access(...)`), and a request builder when the operation needs a body, form or path ids; a
builder that needs a new kind of object (a product, an order) gets a method on RequestContext.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from order_api.auth import service as auth_service
from order_api.orders import service as orders_service
from order_api.orders.schemas import OrderCreate, OrderItem
from order_api.products import service as products_service
from order_api.products.schemas import ProductCreate
from order_api.users.models import Role
from tests.accounts import PASSWORD, Account, Shop, new_email


class Caller(enum.StrEnum):
    ANONYMOUS = "anonymous"
    CUSTOMER = "customer"
    STAFF = "staff"
    ADMIN = "admin"

    @property
    def role(self) -> Role | None:
        return None if self is Caller.ANONYMOUS else Role(self.value)


class Outcome(enum.Enum):
    ALLOWED = "the documented 2xx status"
    UNAUTHENTICATED = "401 problem not_authenticated with WWW-Authenticate: Bearer"
    FORBIDDEN = "403 problem forbidden"
    HIDDEN = "404 problem not_found: SPEC hides that the object exists"


ALLOWED = Outcome.ALLOWED
UNAUTHENTICATED = Outcome.UNAUTHENTICATED
FORBIDDEN = Outcome.FORBIDDEN
HIDDEN = Outcome.HIDDEN


@dataclass(frozen=True)
class Access:
    """What each caller gets from one operation."""

    anonymous: Outcome
    customer: Outcome
    staff: Outcome
    admin: Outcome

    def of(self, caller: Caller) -> Outcome:
        outcomes = {
            Caller.ANONYMOUS: self.anonymous,
            Caller.CUSTOMER: self.customer,
            Caller.STAFF: self.staff,
            Caller.ADMIN: self.admin,
        }
        return outcomes[caller]


EVERYONE = Access(anonymous=ALLOWED, customer=ALLOWED, staff=ALLOWED, admin=ALLOWED)
SIGNED_IN = Access(anonymous=UNAUTHENTICATED, customer=ALLOWED, staff=ALLOWED, admin=ALLOWED)
STAFF_AND_ADMIN = Access(
    anonymous=UNAUTHENTICATED, customer=FORBIDDEN, staff=ALLOWED, admin=ALLOWED
)
ADMIN_ONLY = Access(anonymous=UNAUTHENTICATED, customer=FORBIDDEN, staff=FORBIDDEN, admin=ALLOWED)
# For someone else's object: a non-admin must not learn whether it exists.
ADMIN_ELSE_HIDDEN = Access(anonymous=UNAUTHENTICATED, customer=HIDDEN, staff=HIDDEN, admin=ALLOWED)
# For another customer's order: staff handle every order, a customer must not learn it exists.
STAFF_ELSE_HIDDEN = Access(anonymous=UNAUTHENTICATED, customer=HIDDEN, staff=ALLOWED, admin=ALLOWED)


@dataclass(frozen=True)
class RequestInput:
    """The parts of a request a row chooses; the caller's Authorization header is added later."""

    path_params: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    form: Mapping[str, str] | None = None

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `httpx2.AsyncClient.request`, the URL excepted."""
        return {"json": self.json, "data": self.form}


@dataclass
class RequestContext:
    """What a request builder may draw on: the shop, and the caller (None when anonymous).

    Every helper makes new objects, so a request with side effects never touches another's.
    """

    shop: Shop
    caller: Account | None

    async def another_user_id(self) -> str:
        """A new customer who is not the caller."""
        return str((await self.shop.create_user(Role.CUSTOMER)).id)

    async def new_credentials(self) -> dict[str, str]:
        """The OAuth2 password form of a new customer."""
        user = await self.shop.create_user(Role.CUSTOMER)
        return {"username": user.email, "password": PASSWORD}

    async def new_refresh_token(self) -> str:
        """An unused refresh token from a new login of a new customer."""
        user = await self.shop.create_user(Role.CUSTOMER)
        response = await self.shop.log_in(user.email)
        assert response.status_code == 200, response.text
        token: str = response.json()["refresh_token"]
        return token

    async def new_product_id(self) -> str:
        """A new active product with stock for a few orders, made by the catalogue service."""
        data = ProductCreate(
            name=f"Matrix product {uuid.uuid4().hex[:8]}", price_cents=500, stock=5
        )
        async with self.shop.app.state.sessionmaker() as session:
            product = await products_service.create_product(
                session, self.shop.app.state.cache, data
            )
            product_id = str(product.id)
            await session.commit()
        return product_id

    async def another_customers_order_id(self) -> str:
        """A new PENDING order of a new customer who is not the caller, placed by the service."""
        product_id = uuid.UUID(await self.new_product_id())
        customer = await self.shop.create_user(Role.CUSTOMER)
        data = OrderCreate(
            items=[OrderItem(product_id=product_id, quantity=1)], payment_method_id="pm_matrix"
        )
        currency = self.shop.app.state.settings.currency
        async with self.shop.app.state.sessionmaker() as session:
            caller = auth_service.Caller(
                customer.id, customer.email, customer.full_name, customer.role
            )
            order = await orders_service.place_order(session, caller, data, currency)
            order_id = str(order.id)
            await session.commit()
        return order_id


RequestBuilder = Callable[[RequestContext], Awaitable[RequestInput]]


async def no_input(context: RequestContext) -> RequestInput:
    return RequestInput()


async def registration(context: RequestContext) -> RequestInput:
    body = {"email": new_email("register"), "password": PASSWORD, "full_name": "Ada Lovelace"}
    return RequestInput(json=body)


async def login_form(context: RequestContext) -> RequestInput:
    return RequestInput(form=await context.new_credentials())


async def refresh_token_body(context: RequestContext) -> RequestInput:
    return RequestInput(json={"refresh_token": await context.new_refresh_token()})


async def rename(context: RequestContext) -> RequestInput:
    return RequestInput(json={"full_name": "Renamed By Themself"})


async def another_user(context: RequestContext) -> RequestInput:
    return RequestInput(path_params={"user_id": await context.another_user_id()})


async def rename_another_user(context: RequestContext) -> RequestInput:
    user_id = await context.another_user_id()
    return RequestInput(path_params={"user_id": user_id}, json={"full_name": "Renamed By Admin"})


async def new_product_body(context: RequestContext) -> RequestInput:
    return RequestInput(json={"name": "Matrix mug", "price_cents": 850, "stock": 3})


async def a_product(context: RequestContext) -> RequestInput:
    return RequestInput(path_params={"product_id": await context.new_product_id()})


async def reprice_a_product(context: RequestContext) -> RequestInput:
    product_id = await context.new_product_id()
    return RequestInput(path_params={"product_id": product_id}, json={"price_cents": 999})


async def order_body(context: RequestContext) -> RequestInput:
    items = [{"product_id": await context.new_product_id(), "quantity": 1}]
    return RequestInput(json={"items": items, "payment_method_id": "pm_matrix"})


async def another_customers_order(context: RequestContext) -> RequestInput:
    return RequestInput(path_params={"order_id": await context.another_customers_order_id()})


async def pay_another_customers_order(context: RequestContext) -> RequestInput:
    order_id = await context.another_customers_order_id()
    return RequestInput(path_params={"order_id": order_id}, json={"status": "PAID"})


@dataclass(frozen=True)
class Rule:
    access: Access
    build: RequestBuilder = no_input


Operation = tuple[str, str]

MATRIX: dict[Operation, Rule] = {
    # Operations
    ("GET", "/health/live"): Rule(EVERYONE),
    ("GET", "/health"): Rule(EVERYONE),
    ("GET", "/health/ready"): Rule(EVERYONE),
    # Auth
    ("POST", "/api/v1/auth/token"): Rule(EVERYONE, login_form),
    ("POST", "/api/v1/auth/refresh"): Rule(EVERYONE, refresh_token_body),
    ("POST", "/api/v1/auth/logout"): Rule(EVERYONE, refresh_token_body),
    ("POST", "/api/v1/auth/logout-all"): Rule(SIGNED_IN),
    # Users
    ("POST", "/api/v1/users"): Rule(EVERYONE, registration),
    ("GET", "/api/v1/users/me"): Rule(SIGNED_IN),
    ("PATCH", "/api/v1/users/me"): Rule(SIGNED_IN, rename),
    ("GET", "/api/v1/users"): Rule(STAFF_AND_ADMIN),
    ("GET", "/api/v1/users/{user_id}"): Rule(ADMIN_ONLY, another_user),
    ("PATCH", "/api/v1/users/{user_id}"): Rule(ADMIN_ONLY, rename_another_user),
    ("DELETE", "/api/v1/users/{user_id}"): Rule(ADMIN_ELSE_HIDDEN, another_user),
    # Products
    ("GET", "/api/v1/products"): Rule(EVERYONE),
    ("GET", "/api/v1/products/popular"): Rule(EVERYONE),
    ("GET", "/api/v1/products/{product_id}"): Rule(EVERYONE, a_product),
    ("POST", "/api/v1/products"): Rule(STAFF_AND_ADMIN, new_product_body),
    ("PATCH", "/api/v1/products/{product_id}"): Rule(STAFF_AND_ADMIN, reprice_a_product),
    ("DELETE", "/api/v1/products/{product_id}"): Rule(STAFF_AND_ADMIN, a_product),
    # Orders
    ("POST", "/api/v1/orders"): Rule(SIGNED_IN, order_body),
    ("GET", "/api/v1/orders"): Rule(SIGNED_IN),
    ("GET", "/api/v1/orders/{order_id}"): Rule(STAFF_ELSE_HIDDEN, another_customers_order),
    ("POST", "/api/v1/orders/{order_id}/cancel"): Rule(STAFF_ELSE_HIDDEN, another_customers_order),
    ("GET", "/api/v1/orders/{order_id}/events"): Rule(STAFF_ELSE_HIDDEN, another_customers_order),
    ("POST", "/api/v1/orders/{order_id}/status"): Rule(
        STAFF_AND_ADMIN, pay_another_customers_order
    ),
}
