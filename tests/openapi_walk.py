"""Walking an OpenAPI document: every schema node reachable from a request or a response."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import httpx2

Schema = dict[str, Any]
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


class Node(NamedTuple):
    where: str  # e.g. "POST /api/v1/orders body application/json.items[].quantity"
    name: str | None  # the property this node describes (None for a root)
    schema: Schema


async def fetch_schema(client: httpx2.AsyncClient) -> Schema:
    """The served OpenAPI document."""
    response = await client.get("/api/openapi.json")
    assert response.status_code == 200, response.text
    schema: Schema = response.json()
    return schema


def resolve(schema: Schema, document: Schema) -> Schema:
    reference = schema.get("$ref")
    if reference is None:
        return schema
    target: Schema = document
    for part in reference.removeprefix("#/").split("/"):
        target = target[part]
    return target


def schema_nodes(
    where: str,
    schema: Schema,
    document: Schema,
    name: str | None = None,
    seen: frozenset[str] = frozenset(),
) -> Iterator[Node]:
    """Each node reachable from `schema` through refs, properties, arrays and unions."""
    reference = schema.get("$ref")
    if reference is not None:
        if reference in seen:
            return  # a recursive schema: its nodes were walked on the way in
        seen = seen | {reference}
    schema = resolve(schema, document)
    yield Node(where, name, schema)
    for child_name, child in schema.get("properties", {}).items():
        yield from schema_nodes(f"{where}.{child_name}", child, document, child_name, seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from schema_nodes(f"{where}[]", schema[key], document, name, seen)
    for key in ("anyOf", "oneOf", "allOf"):
        for child in schema.get(key, []):
            yield from schema_nodes(where, child, document, name, seen)


def operations(document: Schema) -> Iterator[tuple[str, Schema]]:
    for path, path_item in document["paths"].items():
        for method, operation in path_item.items():
            if method in HTTP_METHODS:
                yield f"{method.upper()} {path}", operation


def response_schemas(document: Schema) -> Iterator[tuple[str, Schema]]:
    for where, operation in operations(document):
        for status, response in operation.get("responses", {}).items():
            for content in resolve(response, document).get("content", {}).values():
                if "schema" in content:
                    yield f"{where} {status}", content["schema"]


def request_inputs(document: Schema) -> Iterator[tuple[str, Schema]]:
    """(where, schema) of every input of every operation: parameters and request bodies."""
    for path, path_item in document["paths"].items():
        shared = path_item.get("parameters", [])
        for where, operation in operations({"paths": {path: path_item}}):
            for parameter in [*shared, *operation.get("parameters", [])]:
                parameter = resolve(parameter, document)
                # The parameter's own name counts, not only the names inside its schema.
                schema = {"properties": {parameter["name"]: parameter.get("schema", {})}}
                yield f"{where} {parameter['in']} {parameter['name']}", schema
            body = resolve(operation.get("requestBody", {}), document)
            for media_type, content in body.get("content", {}).items():
                yield f"{where} body {media_type}", content.get("schema", {})


def request_nodes(document: Schema) -> Iterator[Node]:
    for where, schema in request_inputs(document):
        yield from schema_nodes(where, schema, document)
