"""API9:2023 (improper inventory), reliability.md API-18: every route the app serves is either an
operation of the OpenAPI schema or on a short, explicit list of non-API routes, so nothing is
reachable that the schema, the authorization matrix and the fuzzer do not know about.

The walk goes through `app.routes` itself, including FastAPI 0.165's included routers (their
routes live inside `original_router`, under the include's prefix), not through the schema.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from fastapi import APIRouter, FastAPI
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from tests.accounts import ShopFactory
from tests.openapi_walk import HTTP_METHODS, fetch_schema
from tests.test_errors import assert_problem

# (kind, method, path): kind is "http", "websocket" or "mount" (a prefix with files under it).
ServedRoute = tuple[str, str, str]

# Served on purpose yet not API operations, each with the reason it stays out of the schema.
NON_API_ROUTES: dict[ServedRoute, str] = {
    ("http", "GET", "/api/openapi.json"): "the schema itself",
    ("http", "GET", "/api/docs"): "Swagger UI page",
    ("http", "GET", "/api/docs/oauth2-redirect"): "Swagger UI's OAuth2 redirect page",
    ("mount", "*", "/api/docs/static"): "Swagger UI's static files",
    ("http", "GET", "/board"): "the staff board page",
    ("http", "GET", "/board/{name}"): "the board's script and style sheet",
    ("http", "GET", "/metrics"): "Prometheus scrape, allowed networks only",
    ("websocket", "*", "/api/v1/orders/ws"): "every order's live stream (staff)",
    ("websocket", "*", "/api/v1/orders/ws/{customer_id}"): "one customer's live stream",
}
# Paths a scanner tries first: nothing may answer them but the 404 problem of an unknown path.
PROBED_PATHS = [
    "/docs",
    "/redoc",
    "/openapi.json",
    "/api/redoc",
    "/api/v0/orders",
    "/api/v2/orders",
    "/debug",
    "/admin",
    "/.env",
    "/.git/config",
    "/__test__/boom",
    "/server-status",
]


def served_routes(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[ServedRoute]:
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from served_routes(included.routes, prefix + getattr(context, "prefix", ""))
        elif isinstance(route, Route):
            # HEAD is answered wherever GET is and is documented nowhere (decisions.md 10).
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield "http", method, prefix + route.path_format
        elif isinstance(route, WebSocketRoute):
            yield "websocket", "*", prefix + route.path_format
        elif isinstance(route, Mount):
            yield "mount", "*", prefix + route.path
        else:
            # A kind of route this walk does not know cannot be proven documented.
            yield "unknown", type(route).__name__, prefix + getattr(route, "path", "?")


def undocumented_routes(
    app: FastAPI, schema_paths: dict[str, dict[str, object]]
) -> set[ServedRoute]:
    operations = {
        ("http", method.upper(), path)
        for path, item in schema_paths.items()
        for method in item
        if method in HTTP_METHODS
    }
    return set(served_routes(app.routes)) - operations


async def test_every_served_route_is_in_the_schema_or_on_the_non_api_list(
    make_shop: ShopFactory,
) -> None:
    # Development, not test: the routes a real deployment serves, without the /__test__ ones.
    shop = await make_shop(environment="development")
    paths = (await fetch_schema(shop.client))["paths"]
    assert len(paths) >= 15  # the schema is the API's, not an empty document
    # Both directions, so a route dropped from the app also leaves the list.
    assert undocumented_routes(shop.app, paths) == set(NON_API_ROUTES)


async def test_the_test_environment_adds_only_test_routes(make_shop: ShopFactory) -> None:
    shop = await make_shop()  # ENVIRONMENT=test, as the suite runs
    extra = undocumented_routes(shop.app, (await fetch_schema(shop.client))["paths"])
    extra -= set(NON_API_ROUTES)
    assert extra, "the diagnostics routes are expected in the test environment"
    assert all(path.startswith("/__test__/") for _, _, path in extra), extra


@pytest.mark.parametrize("path", PROBED_PATHS)
async def test_probed_paths_get_the_404_of_an_unknown_path(
    make_shop: ShopFactory, path: str
) -> None:
    shop = await make_shop(environment="development")
    response = await shop.client.get(path)
    assert_problem(response, 404, "not_found")
    assert "server" not in response.headers
    assert "x-powered-by" not in response.headers


def test_the_walk_finds_an_undocumented_route_in_an_included_router() -> None:
    """A hidden route two includes deep, under prefixes, is reported with its full path."""
    inner = APIRouter()

    @inner.get("/export/{item_id:int}", include_in_schema=False)
    async def export(item_id: int) -> int:
        return item_id

    @inner.websocket("/feed")
    async def feed() -> None:
        return None

    outer = APIRouter()
    outer.include_router(inner, prefix="/inner")
    app = FastAPI()

    @app.get("/documented")
    async def documented() -> str:
        return "ok"

    app.include_router(outer, prefix="/outer")
    assert undocumented_routes(app, app.openapi()["paths"]) >= {
        ("http", "GET", "/outer/inner/export/{item_id}"),
        ("websocket", "*", "/outer/inner/feed"),
    }
    assert ("http", "GET", "/documented") not in undocumented_routes(app, app.openapi()["paths"])
