"""Every error is application/problem+json with a stable code and the response's request id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from order_api.platform.errors import PROBLEM_MEDIA_TYPE
from order_api.platform.telemetry import REQUEST_ID_HEADER
from tests.support import AppFactory

SMALL_LIMIT = 2048


def assert_problem(response: httpx2.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:order-api:problem:{code}"
    assert body["title"]
    assert body["detail"]
    assert body["request_id"] == response.headers[REQUEST_ID_HEADER]
    if status == 422:  # decision 82: every 422 names its fields, as the one 422 schema says
        assert body["errors"], body
    return body


async def test_unknown_route_is_404_problem(client: httpx2.AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/nothing-here"), 404, "not_found")


async def test_wrong_method_is_405_problem_keeping_allow(client: httpx2.AsyncClient) -> None:
    response = await client.delete("/health/live")
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET"


@pytest.mark.parametrize("path", ["/health/live", "/health/ready", "/api/docs"])
async def test_head_is_answered_like_get(client: httpx2.AsyncClient, path: str) -> None:
    response = await client.head(path)
    got = await client.get(path)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"] == got.headers["content-type"]


async def test_deeply_nested_json_is_malformed_json(client: httpx2.AsyncClient) -> None:
    body = b"[" * 200_000 + b"]" * 200_000
    response = await client.post(
        "/__test__/echo", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 400, "malformed_json")


async def test_malformed_json_is_400_problem(client: httpx2.AsyncClient) -> None:
    response = await client.post(
        "/__test__/echo", content=b'{"name": "x", ', headers={"content-type": "application/json"}
    )
    assert_problem(response, 400, "malformed_json")


async def test_wrong_content_type_is_415_problem(client: httpx2.AsyncClient) -> None:
    response = await client.post(
        "/__test__/echo",
        content=b'{"name": "x", "quantity": 1}',
        headers={"content-type": "text/plain"},
    )
    assert_problem(response, 415, "unsupported_media_type")


async def test_invalid_fields_are_422_with_field_errors(client: httpx2.AsyncClient) -> None:
    response = await client.post(
        "/__test__/echo", json={"name": "", "quantity": 101, "role": "admin"}
    )
    body = assert_problem(response, 422, "validation_error")
    errors = {tuple(error["loc"]): error for error in body["errors"]}
    assert set(errors) == {("body", "name"), ("body", "quantity"), ("body", "role")}
    assert errors[("body", "role")]["type"] == "extra_forbidden"
    assert all(error["msg"] for error in body["errors"])
    assert "input" not in errors[("body", "role")]


async def test_valid_body_passes(client: httpx2.AsyncClient) -> None:
    response = await client.post("/__test__/echo", json={"name": "x", "quantity": 3})
    assert response.status_code == 200
    assert response.json() == {"name": "x", "quantity": 3}


async def test_missing_credentials_are_401_with_challenge(client: httpx2.AsyncClient) -> None:
    response = await client.get("/__test__/protected")
    assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    granted = await client.get("/__test__/protected", headers={"authorization": "Bearer let-me-in"})
    assert granted.status_code == 200


async def test_unhandled_error_is_bare_500(client: httpx2.AsyncClient) -> None:
    response = await client.get("/__test__/boom", headers={REQUEST_ID_HEADER: "t-500"})
    body = assert_problem(response, 500, "internal_error")
    assert body["request_id"] == "t-500"
    for leak in ("SELECT", "secret", "hunter2", "Traceback", "BoomError", ".py"):
        assert leak not in response.text


async def test_an_uncaught_timeout_is_a_500_not_a_database_outage(
    client: httpx2.AsyncClient,
) -> None:
    response = await client.get("/__test__/boom", params={"error": "timeout"})
    assert_problem(response, 500, "internal_error")


async def test_service_keeps_serving_after_a_500(client: httpx2.AsyncClient) -> None:
    await client.get("/__test__/boom")
    assert (await client.get("/health/live")).status_code == 200


@pytest.fixture
async def small_limit_client(make_client: AppFactory) -> httpx2.AsyncClient:
    return await make_client(max_body_size=SMALL_LIMIT)


async def test_declared_body_over_limit_is_413(small_limit_client: httpx2.AsyncClient) -> None:
    response = await small_limit_client.post(
        "/__test__/echo",
        content=b"x" * (SMALL_LIMIT + 1),
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 413, "payload_too_large")


async def test_declared_body_over_limit_is_413_on_any_route(
    small_limit_client: httpx2.AsyncClient,
) -> None:
    response = await small_limit_client.post("/nowhere", content=b"x" * (SMALL_LIMIT + 1))
    assert_problem(response, 413, "payload_too_large")


async def test_chunked_body_over_limit_is_413(small_limit_client: httpx2.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 1024

    response = await small_limit_client.post(
        "/__test__/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "payload_too_large")


async def test_body_at_the_limit_is_accepted(small_limit_client: httpx2.AsyncClient) -> None:
    body = b'{"name": "' + b"n" * 90 + b'", "quantity": 1}'
    body = body + b" " * (SMALL_LIMIT - len(body))
    response = await small_limit_client.post(
        "/__test__/echo", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "sent",
    ["abc-123", "A.b_c-9", "x" * 64],
)
async def test_well_formed_request_id_is_echoed(client: httpx2.AsyncClient, sent: str) -> None:
    response = await client.get("/nowhere", headers={REQUEST_ID_HEADER: sent})
    assert response.headers[REQUEST_ID_HEADER] == sent
    assert response.json()["request_id"] == sent


@pytest.mark.parametrize(
    "sent",
    ["", "x" * 65, "a b", 'x","level":"critical', "a/b", "é"],
)
async def test_malformed_request_id_is_replaced(client: httpx2.AsyncClient, sent: str) -> None:
    response = await client.get(
        "/nowhere", headers=[(REQUEST_ID_HEADER.encode(), sent.encode("utf-8"))]
    )
    generated = response.headers[REQUEST_ID_HEADER]
    assert generated != sent
    assert len(generated) == 32
    assert response.json()["request_id"] == generated


async def test_repeated_request_id_header_is_replaced(client: httpx2.AsyncClient) -> None:
    response = await client.get(
        "/nowhere", headers=[(b"x-request-id", b"one"), (b"x-request-id", b"two")]
    )
    assert response.headers[REQUEST_ID_HEADER] not in {"one", "two"}


async def test_each_request_gets_its_own_id(client: httpx2.AsyncClient) -> None:
    first = await client.get("/health/live")
    second = await client.get("/health/live")
    assert first.headers[REQUEST_ID_HEADER] != second.headers[REQUEST_ID_HEADER]
