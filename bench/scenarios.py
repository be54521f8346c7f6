"""What is measured: each scenario is one server, one Lua script and its arguments."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Group(StrEnum):
    BASELINE = "baseline"
    SERVICE = "order-api, 1 process"
    MIDDLEWARE_PAIR = "middleware pair"
    EMBEDDED = "embedded SQLite"
    SCALING = "order-api, 2 processes"
    SIZE = "cost vs size"


class ServerName(StrEnum):
    PLAIN_JSON = "plain-json"
    BARE_PRODUCT = "bare-product"
    BARE_ORDER = "bare-order"
    SERVICE = "order-api-1"
    SERVICE_TWO_PROCESSES = "order-api-2"
    BARE_STACK = "order-api-no-middleware"
    # The same command as SERVICE, serving only the pair's product reads: as BARE_STACK does.
    PAIRED = "order-api-paired"
    EMBEDDED = "order-api-embedded"


class Customer(StrEnum):
    """Whose bearer token a scenario sends (the embedded service has its own buyer)."""

    READER = "reader"
    BUYER = "buyer"
    EMBEDDED_BUYER = "embedded-buyer"


@dataclass(frozen=True)
class FixedGet:
    path: str
    customer: Customer | None = None


@dataclass(frozen=True)
class ProductById:
    prefix: str = "/api/v1/products/"


@dataclass(frozen=True)
class PlaceOrder:
    customer: Customer
    lines: int = 1
    path: str = "/api/v1/orders"


Load = FixedGet | ProductById | PlaceOrder


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    group: Group
    server: ServerName
    load: Load
    # The key of the baseline scenario its ratios are taken against, if any.
    baseline: str | None = None


PLAIN_JSON = "plain-json"
BARE_PRODUCT = "bare-product"
BARE_ORDER = "bare-order"
HEALTH = "health"
PRODUCT = "product"
PRODUCTS_PAGE = "products-page-20"
POPULAR = "popular"
ORDERS_PAGE = "orders-page-20"
ORDER = "order"
BARE_STACK_PRODUCT = "no-middleware-product"
PAIRED_PRODUCT = "paired-product"

HEALTH_PATH = "/health/live"
PRODUCT_TITLE = "GET /api/v1/products/{id}"
ORDER_TITLE = "POST /api/v1/orders"


def service_scenarios(server: ServerName, group: Group, label: str) -> list[Scenario]:
    """The six order-api scenarios, on one server."""
    suffix = "" if server is ServerName.SERVICE else f"-{server.value}"
    return [
        Scenario(
            HEALTH + suffix,
            f"{label}: GET /health/live",
            group,
            server,
            FixedGet(HEALTH_PATH),
            PLAIN_JSON,
        ),
        Scenario(
            PRODUCT + suffix,
            f"{label}: {PRODUCT_TITLE}",
            group,
            server,
            ProductById(),
            BARE_PRODUCT,
        ),
        Scenario(
            PRODUCTS_PAGE + suffix,
            f"{label}: GET /api/v1/products?page_size=20",
            group,
            server,
            FixedGet("/api/v1/products?page_size=20"),
        ),
        Scenario(
            POPULAR + suffix,
            f"{label}: GET /api/v1/products/popular",
            group,
            server,
            FixedGet("/api/v1/products/popular"),
        ),
        Scenario(
            ORDERS_PAGE + suffix,
            f"{label}: GET /api/v1/orders?page_size=20",
            group,
            server,
            FixedGet("/api/v1/orders?page_size=20", Customer.READER),
        ),
        Scenario(
            ORDER + suffix,
            f"{label}: {ORDER_TITLE}",
            group,
            server,
            PlaceOrder(Customer.BUYER),
            BARE_ORDER,
        ),
    ]


def size_scenarios() -> list[Scenario]:
    """Sizes not already measured by the 1-process scenarios (page 20, one line)."""
    server, group = ServerName.SERVICE, Group.SIZE
    scenarios = [
        Scenario(
            f"products-page-{size}",
            f"order-api: GET /api/v1/products?page_size={size}",
            group,
            server,
            FixedGet(f"/api/v1/products?page_size={size}"),
        )
        for size in (1, 100)
    ]
    scenarios += [
        Scenario(
            f"orders-page-{size}",
            f"order-api: GET /api/v1/orders?page_size={size}",
            group,
            server,
            FixedGet(f"/api/v1/orders?page_size={size}", Customer.READER),
        )
        for size in (1, 100)
    ]
    scenarios += [
        Scenario(
            f"order-{lines}-lines",
            f"order-api: {ORDER_TITLE} ({lines} lines)",
            group,
            server,
            # No baseline: the bare order places one line; the cost per line is the point here.
            PlaceOrder(Customer.BUYER, lines),
        )
        for lines in (5, 20)
    ]
    return scenarios


def all_scenarios() -> list[Scenario]:
    baselines = [
        Scenario(
            PLAIN_JSON,
            "baseline: plain FastAPI GET /health/live",
            Group.BASELINE,
            ServerName.PLAIN_JSON,
            FixedGet(HEALTH_PATH),
        ),
        Scenario(
            BARE_PRODUCT,
            f"baseline: FastAPI + asyncpg {PRODUCT_TITLE}",
            Group.BASELINE,
            ServerName.BARE_PRODUCT,
            ProductById(),
        ),
        Scenario(
            BARE_ORDER,
            f"baseline: FastAPI + asyncpg {ORDER_TITLE}",
            Group.BASELINE,
            ServerName.BARE_ORDER,
            PlaceOrder(Customer.BUYER),
        ),
    ]
    # The middleware cost: two processes alike but for the middleware, with the same history.
    middleware_pair = [
        Scenario(
            PAIRED_PRODUCT,
            f"order-api, middleware pair: {PRODUCT_TITLE}",
            Group.MIDDLEWARE_PAIR,
            ServerName.PAIRED,
            ProductById(),
            BARE_PRODUCT,
        ),
        Scenario(
            BARE_STACK_PRODUCT,
            f"order-api without middleware: {PRODUCT_TITLE}",
            Group.MIDDLEWARE_PAIR,
            ServerName.BARE_STACK,
            ProductById(),
            BARE_PRODUCT,
        ),
    ]
    embedded = [
        Scenario(
            "embedded-product",
            f"embedded SQLite: {PRODUCT_TITLE}",
            Group.EMBEDDED,
            ServerName.EMBEDDED,
            ProductById(),
            BARE_PRODUCT,
        ),
        Scenario(
            "embedded-order",
            f"embedded SQLite: {ORDER_TITLE}",
            Group.EMBEDDED,
            ServerName.EMBEDDED,
            PlaceOrder(Customer.EMBEDDED_BUYER),
            BARE_ORDER,
        ),
    ]
    return [
        *baselines,
        *service_scenarios(ServerName.SERVICE, Group.SERVICE, "order-api"),
        # Back to back (in_round_order alternates which goes first): the two runs share the
        # database's and the machine's state as closely as two runs can.
        *middleware_pair,
        *embedded,
        *service_scenarios(
            ServerName.SERVICE_TWO_PROCESSES, Group.SCALING, "order-api, 2 processes"
        ),
        *size_scenarios(),
    ]


def in_round_order(scenarios: list[Scenario], round_number: int) -> list[Scenario]:
    """The scenarios in the order round `round_number` (from 1) runs them: in even rounds the
    middleware pair swapped, so neither side always runs first (an ABBA design)."""
    keys = [scenario.key for scenario in scenarios]
    if round_number % 2 or PAIRED_PRODUCT not in keys or BARE_STACK_PRODUCT not in keys:
        return scenarios
    first, second = keys.index(PAIRED_PRODUCT), keys.index(BARE_STACK_PRODUCT)
    ordered = list(scenarios)
    ordered[first], ordered[second] = scenarios[second], scenarios[first]
    return ordered
