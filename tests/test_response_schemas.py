"""No response can carry a password, a hash or an internal field (issue 10, item 3: object
property level authorization), checked by walking every response schema of the OpenAPI document.

Response models are separate classes from the database models, so this holds only as long as
nobody returns a model that grew such a field: the walk catches that the day it happens.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx2

# A password, any hash or secret, and the outbox's and idempotency records' internals.
FORBIDDEN_PROPERTY = re.compile(r"password|hash|secret|lease|attempts|request_body", re.IGNORECASE)


def resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    reference = schema.get("$ref")
    if reference is None:
        return schema
    target: dict[str, Any] = document
    for part in reference.removeprefix("#/").split("/"):
        target = target[part]
    return target


def property_names(
    schema: dict[str, Any], document: dict[str, Any], seen: set[str] | None = None
) -> Iterator[str]:
    """Every property name reachable from `schema`, through refs, arrays and unions."""
    seen = set() if seen is None else seen
    reference = schema.get("$ref")
    if reference is not None:
        if reference in seen:
            return
        seen.add(reference)
    schema = resolve(schema, document)
    for name, child in schema.get("properties", {}).items():
        yield name
        yield from property_names(child, document, seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from property_names(schema[key], document, seen)
    for key in ("anyOf", "oneOf", "allOf"):
        for child in schema.get(key, []):
            yield from property_names(child, document, seen)


def response_schemas(document: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation.get("responses", {}).items():
                for content in resolve(response, document).get("content", {}).values():
                    if "schema" in content:
                        yield f"{method.upper()} {path} {status}", content["schema"]


async def test_no_response_schema_offers_a_secret_or_internal_field(
    client: httpx2.AsyncClient,
) -> None:
    document = (await client.get("/api/openapi.json")).json()
    walked = list(response_schemas(document))
    assert len(walked) > 30  # the walk reaches the API, not just the health routes
    offending = {
        (where, name)
        for where, schema in walked
        for name in property_names(schema, document)
        if FORBIDDEN_PROPERTY.search(name)
    }
    assert offending == set()


async def test_the_walk_finds_a_forbidden_field_where_there_is_one() -> None:
    document = {
        "components": {
            "schemas": {
                "Inner": {"properties": {"password_hash": {"type": "string"}}},
                "Outer": {
                    "properties": {"items": {"items": {"$ref": "#/components/schemas/Inner"}}}
                },
            }
        }
    }
    names = set(property_names({"$ref": "#/components/schemas/Outer"}, document))
    assert {name for name in names if FORBIDDEN_PROPERTY.search(name)} == {"password_hash"}
