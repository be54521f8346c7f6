"""Input that fuzzing finds breaks FastAPI services: NUL bytes, integers beyond
a column's range, strings beyond its length, invalid UTF-8, deep nesting, duplicate keys and huge
arrays each get a 4xx problem, never a 500, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import httpx2
import pytest
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from order_api.platform.http import UniqueKeysRoute
from order_api.users.models import Role
from tests.accounts import PASSWORD, Shop
from tests.catalogue import ORDERS, PAYMENT_METHOD_ID, PRODUCTS, create_product
from tests.test_errors import assert_problem

KETTLE = {"name": "Kettle", "price_cents": 100, "stock": 1}
JSON_HEADERS = {"content-type": "application/json"}


async def create_as_staff(shop: Shop, body: dict[str, Any]) -> httpx2.Response:
    staff = await shop.account(Role.STAFF)
    return await shop.client.post(PRODUCTS, json=body, headers=staff.headers)


async def post_bytes_as_staff(shop: Shop, body: bytes) -> httpx2.Response:
    staff = await shop.account(Role.STAFF)
    return await shop.client.post(PRODUCTS, content=body, headers={**JSON_HEADERS, **staff.headers})


@pytest.mark.parametrize(
    "field", [{"name": "Kettle\x00"}, {"description": "hot\x00water"}, {"name": "é" * 201}]
)
async def test_nul_bytes_and_overlong_text_are_refused(shop: Shop, field: dict[str, str]) -> None:
    assert_problem(await create_as_staff(shop, {**KETTLE, **field}), 422, "validation_error")


@pytest.mark.parametrize(
    "field", [{"price_cents": 2**63}, {"stock": 2**31}, {"price_cents": 10**60}, {"stock": -1}]
)
async def test_integers_beyond_a_column_are_refused(shop: Shop, field: dict[str, int]) -> None:
    assert_problem(await create_as_staff(shop, {**KETTLE, **field}), 422, "validation_error")


async def test_order_fields_beyond_their_columns_are_refused(shop: Shop) -> None:
    staff, customer = await shop.account(Role.STAFF), await shop.account()
    product = await create_product(shop, staff.headers)
    line = {"product_id": product["id"], "quantity": 1}
    for body in (
        {"items": [{**line, "quantity": 2**40}], "payment_method_id": PAYMENT_METHOD_ID},
        {"items": [line], "payment_method_id": "pm\x00"},
        {"items": [line], "payment_method_id": "p" * 65},
    ):
        refused = await shop.client.post(ORDERS, json=body, headers=customer.headers)
        assert_problem(refused, 422, "validation_error")
    body = {"items": [line], "payment_method_id": PAYMENT_METHOD_ID}
    overlong_key = {**customer.headers, "Idempotency-Key": "k" * 300}
    refused = await shop.client.post(ORDERS, json=body, headers=overlong_key)
    assert_problem(refused, 422, "validation_error")  # a header that fails validation


async def test_a_huge_array_of_lines_is_refused(shop: Shop) -> None:
    staff, customer = await shop.account(Role.STAFF), await shop.account()
    product = await create_product(shop, staff.headers)
    lines = [
        {"product_id": product["id"], "quantity": 1}
    ] * 10_000  # ~600 KB: under the 1 MiB limit
    body = {"items": lines, "payment_method_id": PAYMENT_METHOD_ID}
    refused = await shop.client.post(ORDERS, json=body, headers=customer.headers)
    assert_problem(refused, 422, "validation_error")


async def test_account_fields_with_nul_bytes_or_overlong_are_refused(shop: Shop) -> None:
    for body in (
        {"email": "a\x00@example.com", "password": PASSWORD, "full_name": "Ada"},
        {"email": "ada@example.com", "password": PASSWORD, "full_name": "Ada\x00"},
        {"email": "a" * 400 + "@example.com", "password": PASSWORD, "full_name": "Ada"},
    ):
        refused = await shop.client.post("/api/v1/users", json=body)
        assert_problem(refused, 422, "validation_error")


@pytest.mark.parametrize(
    "params", [{"q": "kettle\x00"}, {"page": 2**63}, {"page_size": 2**63}, {"page": -1}]
)
async def test_query_parameters_beyond_their_range_are_refused(
    shop: Shop, params: dict[str, Any]
) -> None:
    assert_problem(await shop.client.get(PRODUCTS, params=params), 422, "validation_error")


async def test_invalid_utf8_is_malformed_json(shop: Shop) -> None:
    refused = await post_bytes_as_staff(shop, b'{"name": "\xff\xfe", "price_cents": 1, "stock": 1}')
    assert_problem(refused, 400, "malformed_json")  # never became JSON (decision 83)


@pytest.mark.parametrize(
    "encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-8-sig"]
)
async def test_json_in_another_encoding_than_utf8_places_no_order(
    shop: Shop, encoding: str
) -> None:
    """RFC 8259 §8.1: UTF-8 between systems, no byte order mark; json.loads would guess others."""
    staff, customer = await shop.account(Role.STAFF), await shop.account()
    product = await create_product(shop, staff.headers)
    line = {"product_id": product["id"], "quantity": 1}
    body = json.dumps({"items": [line], "payment_method_id": PAYMENT_METHOD_ID}).encode(encoding)
    headers = {**JSON_HEADERS, **customer.headers}
    refused = await shop.client.post(ORDERS, content=body, headers=headers)
    assert_problem(refused, 400, "malformed_json")
    assert (await shop.client.get(ORDERS, headers=customer.headers)).json()["total"] == 0


@pytest.mark.parametrize("depth", [5_000, 100_000])
async def test_deeply_nested_json_is_refused(shop: Shop, depth: int) -> None:
    refused = await post_bytes_as_staff(shop, b"[" * depth + b"]" * depth)
    assert_problem(refused, 400, "malformed_json")  # beyond the parser's limits (decision 83)


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": "Kettle", "name": "Teapot", "price_cents": 1, "stock": 1}',
        b'{"name": "Kettle", "price_cents": 1, "stock": 1, "stock": 500}',
    ],
)
async def test_a_duplicate_key_is_refused_not_resolved(shop: Shop, body: bytes) -> None:
    refused = await post_bytes_as_staff(shop, body)
    problem = assert_problem(refused, 422, "validation_error")
    assert [error["type"] for error in problem["errors"]] == ["duplicate_key"]
    listed = await shop.client.get(PRODUCTS, params={"q": "Kettle"})
    assert listed.json()["total"] == 0  # nothing was stored under either reading


async def test_a_duplicate_key_inside_an_order_line_is_refused(shop: Shop) -> None:
    staff, customer = await shop.account(Role.STAFF), await shop.account()
    product = await create_product(shop, staff.headers)
    line = f'{{"product_id": "{product["id"]}", "quantity": 1, "quantity": 9}}'
    body = f'{{"items": [{line}], "payment_method_id": "{PAYMENT_METHOD_ID}"}}'.encode()
    headers = {**JSON_HEADERS, **customer.headers}
    refused = await shop.client.post(ORDERS, content=body, headers=headers)
    assert_problem(refused, 422, "validation_error")
    assert json.loads(refused.text)["errors"][0]["msg"] == "duplicate key 'quantity'"


def api_routes(routes: Sequence[BaseRoute]) -> Iterator[APIRoute]:
    """Every APIRoute, including those of included routers (FastAPI keeps them inside)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes)


async def test_every_json_route_refuses_duplicate_keys(shop: Shop) -> None:
    """Inventory: every route that reads a body parses its JSON with unique keys."""
    with_bodies = [route for route in api_routes(shop.app.routes) if route.dependant.body_params]
    assert {"/api/v1/orders", "/api/v1/products", "/api/v1/users"} <= {r.path for r in with_bodies}
    assert [r.path for r in with_bodies if not isinstance(r, UniqueKeysRoute)] == []
