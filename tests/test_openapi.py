"""The schema is served, declares problem responses, and the docs page needs no CDN."""

from __future__ import annotations

import re

import httpx2

from order_api.platform.errors import PROBLEM_MEDIA_TYPE
from tests.openapi_walk import fetch_schema, operations


async def test_schema_is_openapi_31_with_our_routes(client: httpx2.AsyncClient) -> None:
    schema = await fetch_schema(client)
    assert schema["openapi"].startswith("3.1")
    assert {"/health/live", "/health", "/health/ready"} <= set(schema["paths"])
    assert not any(path.startswith("/__test__") for path in schema["paths"])


async def test_every_operation_declares_problem_errors(client: httpx2.AsyncClient) -> None:
    schema = await fetch_schema(client)
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            default = operation["responses"]["default"]["content"]
            assert default == {PROBLEM_MEDIA_TYPE: {"schema": problem_ref}}, (path, method)
    components = schema["components"]["schemas"]
    assert set(components["Problem"]["required"]) == {
        "type",
        "title",
        "status",
        "detail",
        "code",
        "request_id",
    }
    assert "errors" in components["ValidationProblem"]["properties"]
    assert "HTTPValidationError" not in components


async def test_readiness_declares_its_own_503_body(client: httpx2.AsyncClient) -> None:
    schema = await fetch_schema(client)
    unavailable = schema["paths"]["/health/ready"]["get"]["responses"]["503"]["content"]
    assert unavailable == {
        "application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}
    }


async def test_docs_page_loads_only_assets_served_here(client: httpx2.AsyncClient) -> None:
    page = await client.get("/api/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert urls, page.text
    assert all(url.startswith("/api/") for url in urls), urls
    assert "/api/openapi.json" in urls
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"):
        response = await client.get(f"/api/docs/static/{asset}")
        assert response.status_code == 200, asset
        assert len(response.content) > 1000


async def test_docs_ship_swagger_ui_5_which_renders_openapi_31(client: httpx2.AsyncClient) -> None:
    bundle = (await client.get("/api/docs/static/swagger-ui-bundle.js")).text
    # Swagger UI 4 cannot render OpenAPI 3.1; version 5 added the isOAS31 code paths.
    assert "isOAS31" in bundle


async def test_static_assets_ignore_range_requests(client: httpx2.AsyncClient) -> None:
    whole = await client.get("/api/docs/static/swagger-ui.css")
    for bad_range in ("bytes=abc", "bytes=5-1", "bytes=999999999-"):
        response = await client.get("/api/docs/static/swagger-ui.css", headers={"range": bad_range})
        assert response.status_code == 200
        assert response.content == whole.content


async def test_oauth2_redirect_page_is_served(client: httpx2.AsyncClient) -> None:
    response = await client.get("/api/docs/oauth2-redirect")
    assert response.status_code == 200
    assert "oauth2" in response.text.lower()


async def test_operation_ids_are_the_route_names_and_unique(client: httpx2.AsyncClient) -> None:
    document = await fetch_schema(client)
    ids = [operation["operationId"] for _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    # The route function's name, not FastAPI's default of name, path and method glued together.
    assert [name for name in ids if not re.fullmatch(r"[a-z]+(_[a-z]+)*", name)] == []
    assert not [name for name in ids if "api_v1" in name or name.endswith(("_get", "_post"))]
    assert {"place_order", "read_product", "change_status", "register", "ready"} <= set(ids)


async def test_every_link_names_an_operation_and_its_parameters(
    client: httpx2.AsyncClient,
) -> None:
    document = await fetch_schema(client)
    by_id = {operation["operationId"]: operation for _, operation in operations(document)}
    links = [
        link
        for _, operation in operations(document)
        for response in operation["responses"].values()
        for link in response.get("links", {}).values()
    ]
    assert len(links) >= 15
    for link in links:
        target = by_id[link["operationId"]]
        declared = {parameter["name"] for parameter in target.get("parameters", [])}
        assert set(link.get("parameters", {})) <= declared, link
        assert "requestBody" not in link or "requestBody" in target, link
