"""Security headers on every kind of response: JSON, errors, middleware answers and the pages."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx2
import pytest

from order_api.platform.http.headers import API_CSP, BOARD_CSP, HSTS
from tests.accounts import Shop, ShopFactory
from tests.test_errors import assert_problem

# Headers are the same on both back-ends; one is enough.
pytestmark = pytest.mark.only_backend("sqlite")

SMALL_LIMIT = 2048
PRODUCTION_KEY = "a production key of forty-eight random-ish bytes!"
Call = Callable[[Shop], Awaitable[httpx2.Response]]


def assert_security_headers(
    response: httpx2.Response, *, csp: str = API_CSP, cache_control: str = "no-store"
) -> None:
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["content-security-policy"] == csp
    assert headers["cache-control"] == cache_control
    assert "x-powered-by" not in headers
    assert "x-xss-protection" not in headers
    assert "strict-transport-security" not in headers


async def chunks() -> AsyncIterator[bytes]:
    for _ in range(4):
        yield b"x" * 1024


async def created_user(shop: Shop) -> httpx2.Response:
    return await shop.register()


async def chunked_too_large(shop: Shop) -> httpx2.Response:
    json_type = {"content-type": "application/json"}
    return await shop.client.post("/__test__/echo", content=chunks(), headers=json_type)


async def declared_too_large(shop: Shop) -> httpx2.Response:
    body = b"x" * (SMALL_LIMIT + 1)
    return await shop.client.post("/__test__/echo", content=body)


CASES: dict[str, tuple[int, Call]] = {
    "200-json": (200, lambda shop: shop.client.get("/health/live")),
    "201-created": (201, created_user),
    "401": (401, lambda shop: shop.client.get("/api/v1/users/me")),
    "404": (404, lambda shop: shop.client.get("/api/v1/nothing-here")),
    "405": (405, lambda shop: shop.client.delete("/health/live")),
    "413-declared": (413, declared_too_large),
    "413-chunked": (413, chunked_too_large),
    "422": (422, lambda shop: shop.client.post("/__test__/echo", json={})),
    "500": (500, lambda shop: shop.client.get("/__test__/boom")),
    "head": (200, lambda shop: shop.client.head("/health/live")),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_every_response_kind_has_the_security_headers(
    make_shop: ShopFactory, case: str
) -> None:
    shop = await make_shop(max_body_size=SMALL_LIMIT)
    status, call = CASES[case]
    response = await call(shop)
    assert response.status_code == status, response.text
    assert_security_headers(response)


async def test_a_route_cannot_weaken_the_fixed_headers_but_keeps_its_own_cache_control(
    shop: Shop,
) -> None:
    # The token endpoint sets no-store itself; the middleware must neither duplicate nor drop it.
    response = await shop.client.post("/api/v1/auth/token", data={"username": "x", "password": "y"})
    assert_problem(response, 401, "invalid_credentials")
    assert response.headers.get_list("cache-control") == ["no-store"]
    assert_security_headers(response)


def inline_script_sources(html: str) -> list[str]:
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    digests = (hashlib.sha256(script.encode()).digest() for script in scripts)
    return [f"'sha256-{base64.b64encode(digest).decode()}'" for digest in digests]


@pytest.mark.parametrize("path", ["/api/docs", "/api/docs/oauth2-redirect"])
async def test_swagger_pages_allow_exactly_their_own_inline_script(
    client: httpx2.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    csp = response.headers["content-security-policy"]
    hashes = inline_script_sources(response.text)
    assert len(hashes) == 1
    directives = dict(directive.partition(" ")[::2] for directive in csp.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == f"'self' {hashes[0]}"
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert directives["frame-ancestors"] == "'none'"
    assert_security_headers(response, csp=csp)


async def test_swagger_assets_revalidate_instead_of_no_store(client: httpx2.AsyncClient) -> None:
    response = await client.get("/api/docs/static/swagger-ui-bundle.js")
    assert response.status_code == 200
    assert_security_headers(response, cache_control="no-cache")
    assert response.headers["etag"]


async def test_board_page_has_its_own_policy_and_caching(client: httpx2.AsyncClient) -> None:
    page = await client.get("/board")
    assert page.status_code == 200
    assert_security_headers(page, csp=BOARD_CSP, cache_control="no-cache")
    script = await client.get("/board/board.js")
    assert_security_headers(script, cache_control="no-cache")
    missing = await client.get("/board/nothing.js")
    assert_problem(missing, 404, "not_found")
    assert_security_headers(missing)


async def test_hsts_only_in_production(make_shop: ShopFactory) -> None:
    shop = await make_shop(
        environment="production",
        secret_key=PRODUCTION_KEY,
        password_hash_memory_kib=19456,
        password_hash_iterations=2,
        allowed_origins=["https://shop.example"],
    )
    for response in (
        await shop.client.get("/health/live"),
        await shop.client.get("/api/v1/nothing-here"),
        await shop.client.get("/board"),
    ):
        assert response.headers["strict-transport-security"] == HSTS
        assert response.headers["x-content-type-options"] == "nosniff"
    # The test-only routes are not there in production: the 500 route is a 404.
    assert (await shop.client.get("/__test__/boom")).status_code == 404
