"""API4:2023 (unrestricted resource consumption), reliability.md API-09/API-10, as an inventory:
every input the schema accepts has an upper bound (string length, array size, number range),
and every page size is capped at 100. The per-endpoint tests prove each bound is enforced; this
walk makes sure an input added later cannot arrive without one.
"""

from __future__ import annotations

import re
from typing import Any

import httpx2

from order_api.platform.db import MAX_PAGE_SIZE
from tests.openapi_walk import Schema, fetch_schema, operations, request_nodes, resolve

# Strings of these formats have a fixed shape, so their length is bounded by the format itself.
FIXED_LENGTH_FORMATS = {"uuid", "date-time", "date"}
# One anchored character class repeated at most n times, such as `^[A-Za-z0-9_-]{1,64}$`.
BOUNDED_PATTERN = re.compile(r"\^\[[^\]]+\]\{\d+,\d+\}\$")


def is_bounded_string(schema: dict[str, Any]) -> bool:
    return (
        "maxLength" in schema
        or "enum" in schema
        or "const" in schema
        or schema.get("format") in FIXED_LENGTH_FORMATS
        or BOUNDED_PATTERN.fullmatch(schema.get("pattern", "")) is not None
    )


# What a node can say instead of a type: its shape comes from these, walked on their own.
SHAPED_BY = {"properties", "anyOf", "oneOf", "allOf", "enum", "const"}


def unbounded(schema: Schema) -> str | None:
    """What bound `schema` lacks: a string, array or number without an upper one, or no type
    at all (an `Any` input takes anything, of any size)."""
    kind = schema.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}  # OpenAPI 3.1 allows a list
    if kind is None and not SHAPED_BY & schema.keys():
        return "input of any type"
    if "string" in kinds and not is_bounded_string(schema):
        return "string without maxLength"
    if "array" in kinds and "maxItems" not in schema:
        return "array without maxItems"
    if (
        kinds & {"integer", "number"}
        and not {"maximum", "exclusiveMaximum", "enum"} & schema.keys()
    ):
        return f"{'integer' if 'integer' in kinds else 'number'} without maximum"
    return None


def every_unbounded_input(document: Schema) -> list[str]:
    found = ((node.where, unbounded(node.schema)) for node in request_nodes(document))
    return sorted(f"{where}: {missing}" for where, missing in found if missing)


def page_size_caps(document: Schema) -> dict[str, Any]:
    """The `page_size` maximum of each operation that takes one."""
    return {
        where: resolve(parameter, document)["schema"].get("maximum")
        for where, operation in operations(document)
        for parameter in operation.get("parameters", [])
        if resolve(parameter, document)["name"] == "page_size"
    }


async def test_every_input_has_an_upper_bound(client: httpx2.AsyncClient) -> None:
    assert every_unbounded_input(await fetch_schema(client)) == []


async def test_every_listing_caps_its_page_size_at_100(client: httpx2.AsyncClient) -> None:
    assert MAX_PAGE_SIZE == 100
    assert page_size_caps(await fetch_schema(client)) == {
        "GET /api/v1/orders": 100,
        "GET /api/v1/products": 100,
        "GET /api/v1/users": 100,
    }


def test_the_walk_finds_each_kind_of_unbounded_input() -> None:
    document: dict[str, Any] = {
        "paths": {
            "/things": {
                "post": {
                    "parameters": [
                        {"in": "query", "name": "page_size", "schema": {"type": "integer"}},
                        {
                            "in": "query",
                            "name": "id",
                            "schema": {"type": "string", "format": "uuid"},
                        },
                    ],
                    "requestBody": {
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}
                        }
                    },
                }
            }
        },
        "components": {
            "schemas": {
                "Thing": {
                    "properties": {
                        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                        "code": {"type": "string", "pattern": "^[a-z]+$"},
                        "tag": {"type": "string", "pattern": "^[a-z]{1,8}$"},
                        "lines": {"type": "array", "items": {"type": "string", "maxLength": 5}},
                        "weight": {"type": "number", "minimum": 0},
                        "anything": {},
                        "label": {"type": ["string", "null"]},
                    }
                },
            }
        },
    }
    assert every_unbounded_input(document) == [
        "POST /things body application/json.anything: input of any type",
        "POST /things body application/json.code: string without maxLength",
        "POST /things body application/json.label: string without maxLength",
        "POST /things body application/json.lines: array without maxItems",
        "POST /things body application/json.note: string without maxLength",
        "POST /things body application/json.weight: number without maximum",
        "POST /things query page_size.page_size: integer without maximum",
    ]
    assert page_size_caps(document) == {"POST /things": None}
