"""CORS from ALLOWED_ORIGINS (reliability row API-17): an exact echo, no credentials, on errors
too, 500 included (HTTP-05)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest

from order_api.platform.http.headers import CORS_EXPOSED_HEADERS, CORS_METHODS, CORS_REQUEST_HEADERS
from order_api.platform.telemetry import REQUEST_ID_HEADER
from tests.accounts import ShopFactory
from tests.test_errors import assert_problem

pytestmark = pytest.mark.only_backend("sqlite")

SHOP = "https://shop.example"
REFUSED_ORIGINS = ["https://evil.example", "https://shop.example.evil.example", "null"]
PREFLIGHT_HEADERS = "authorization,content-type,idempotency-key"
SMALL_LIMIT = 2048


@pytest.fixture
async def client(make_shop: ShopFactory) -> httpx2.AsyncClient:
    shop = await make_shop(allowed_origins=[SHOP], max_body_size=SMALL_LIMIT)
    return shop.client


def preflight(
    origin: str, method: str = "POST", headers: str = PREFLIGHT_HEADERS
) -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": method,
        "access-control-request-headers": headers,
    }


def comma_list(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


def assert_no_cors_grant(response: httpx2.Response) -> None:
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers
    assert "origin" in comma_list(response.headers["vary"])


async def test_the_allowed_origin_is_echoed_exactly(client: httpx2.AsyncClient) -> None:
    response = await client.get("/health/live", headers={"origin": SHOP})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SHOP
    assert "origin" in comma_list(response.headers["vary"])
    exposed = comma_list(response.headers["access-control-expose-headers"])
    assert exposed == set(CORS_EXPOSED_HEADERS)
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize("origin", REFUSED_ORIGINS)
async def test_other_origins_get_no_grant(client: httpx2.AsyncClient, origin: str) -> None:
    response = await client.get("/health/live", headers={"origin": origin})
    assert response.status_code == 200
    assert_no_cors_grant(response)
    assert "access-control-expose-headers" not in response.headers


async def test_a_request_without_origin_still_varies_on_it(client: httpx2.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert_no_cors_grant(response)


async def test_preflight_of_the_allowed_origin(client: httpx2.AsyncClient) -> None:
    response = await client.options("/api/v1/orders", headers=preflight(SHOP))
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["access-control-allow-origin"] == SHOP
    methods = comma_list(response.headers["access-control-allow-methods"])
    assert methods == {method.lower() for method in CORS_METHODS}
    allowed_headers = comma_list(response.headers["access-control-allow-headers"])
    assert allowed_headers == set(CORS_REQUEST_HEADERS)
    assert "idempotency-key" in allowed_headers
    assert int(response.headers["access-control-max-age"]) > 0
    assert "origin" in comma_list(response.headers["vary"])
    assert "access-control-allow-credentials" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers[REQUEST_ID_HEADER]


@pytest.mark.parametrize("origin", REFUSED_ORIGINS)
async def test_preflight_of_other_origins_is_refused(
    client: httpx2.AsyncClient, origin: str
) -> None:
    response = await client.options("/api/v1/orders", headers=preflight(origin))
    assert_problem(response, 403, "cors_refused")
    assert_no_cors_grant(response)
    assert "access-control-allow-methods" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("method", "headers"),
    [("PUT", "content-type"), ("TRACE", ""), ("POST", "authorization,x-evil"), ("POST", "cookie")],
)
async def test_preflight_for_a_method_or_header_not_allowed_is_refused(
    client: httpx2.AsyncClient, method: str, headers: str
) -> None:
    response = await client.options("/api/v1/orders", headers=preflight(SHOP, method, headers))
    assert_problem(response, 403, "cors_refused")
    assert "access-control-allow-origin" not in response.headers


async def test_options_without_origin_is_routed_as_usual(client: httpx2.AsyncClient) -> None:
    response = await client.options("/api/v1/orders")
    assert_problem(response, 405, "method_not_allowed")


async def chunks() -> AsyncIterator[bytes]:
    for _ in range(4):
        yield b"x" * 1024


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/api/v1/nothing-here", 404, "not_found"),
        ("DELETE", "/health/live", 405, "method_not_allowed"),
        ("GET", "/api/v1/users/me", 401, "not_authenticated"),
        ("POST", "/__test__/echo", 422, "validation_error"),
        ("GET", "/__test__/boom", 500, "internal_error"),
    ],
)
async def test_errors_carry_cors_for_the_allowed_origin(
    client: httpx2.AsyncClient, method: str, path: str, status: int, code: str
) -> None:
    body: dict[str, str] | None = {} if method == "POST" else None
    headers = {"origin": SHOP, REQUEST_ID_HEADER: f"cors-{status}"}
    response = await client.request(method, path, headers=headers, json=body)
    assert_problem(response, status, code)
    assert response.headers[REQUEST_ID_HEADER] == f"cors-{status}"
    assert response.headers["access-control-allow-origin"] == SHOP
    assert "x-request-id" in comma_list(response.headers["access-control-expose-headers"])
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"]


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "chunked"])
async def test_a_413_carries_cors(client: httpx2.AsyncClient, declared: bool) -> None:
    content = b"x" * (SMALL_LIMIT + 1) if declared else chunks()
    response = await client.post("/__test__/echo", content=content, headers={"origin": SHOP})
    assert_problem(response, 413, "payload_too_large")
    assert response.headers["access-control-allow-origin"] == SHOP


async def test_a_500_for_another_origin_gets_no_grant(client: httpx2.AsyncClient) -> None:
    response = await client.get("/__test__/boom", headers={"origin": "https://evil.example"})
    assert_problem(response, 500, "internal_error")
    assert_no_cors_grant(response)


async def test_no_origins_configured_grants_nobody(make_shop: ShopFactory) -> None:
    client = (await make_shop()).client
    response = await client.get("/health/live", headers={"origin": SHOP})
    assert_no_cors_grant(response)
    refused = await client.options("/api/v1/orders", headers=preflight(SHOP))
    assert_problem(refused, 403, "cors_refused")


async def test_origins_are_matched_as_browsers_send_them(make_shop: ShopFactory) -> None:
    client = (await make_shop(allowed_origins=["HTTPS://Shop.Example/"])).client
    response = await client.get("/health/live", headers={"origin": SHOP})
    assert response.headers["access-control-allow-origin"] == SHOP


async def test_a_wildcard_outside_production_never_comes_with_credentials(
    make_shop: ShopFactory,
) -> None:
    client = (await make_shop(allowed_origins=["*"])).client
    response = await client.get("/health/live", headers={"origin": "https://evil.example"})
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers
    allowed = await client.options("/api/v1/orders", headers=preflight("https://evil.example"))
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in allowed.headers
