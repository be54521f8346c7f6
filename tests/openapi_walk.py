"""Walking an OpenAPI document: every schema node reachable from a request or a response."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

Schema = dict[str, Any]


def resolve(schema: Schema, document: Schema) -> Schema:
    reference = schema.get("$ref")
    if reference is None:
        return schema
    target: Schema = document
    for part in reference.removeprefix("#/").split("/"):
        target = target[part]
    return target


def schema_nodes(
    schema: Schema, document: Schema, name: str | None = None, seen: set[str] | None = None
) -> Iterator[tuple[str | None, Schema]]:
    """Each node reachable from `schema` through refs, properties, arrays and unions, with the
    name of the property it describes (None for the root and array items)."""
    seen = set() if seen is None else seen
    reference = schema.get("$ref")
    if reference is not None:
        if reference in seen:
            return
        seen.add(reference)
    schema = resolve(schema, document)
    yield name, schema
    for child_name, child in schema.get("properties", {}).items():
        yield from schema_nodes(child, document, child_name, seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from schema_nodes(schema[key], document, name, seen)
    for key in ("anyOf", "oneOf", "allOf"):
        for child in schema.get(key, []):
            yield from schema_nodes(child, document, name, seen)


def operations(document: Schema) -> Iterator[tuple[str, Schema]]:
    for path, path_item in document["paths"].items():
        for method, operation in path_item.items():
            yield f"{method.upper()} {path}", operation


def response_schemas(document: Schema) -> Iterator[tuple[str, Schema]]:
    for where, operation in operations(document):
        for status, response in operation.get("responses", {}).items():
            for content in resolve(response, document).get("content", {}).values():
                if "schema" in content:
                    yield f"{where} {status}", content["schema"]


def request_schemas(document: Schema) -> Iterator[tuple[str, Schema]]:
    """The schema of every parameter and request body, named by operation and input."""
    for where, operation in operations(document):
        for parameter in operation.get("parameters", []):
            parameter = resolve(parameter, document)
            yield f"{where} {parameter['in']} {parameter['name']}", parameter["schema"]
        body = resolve(operation.get("requestBody", {}), document)
        for media_type, content in body.get("content", {}).items():
            yield f"{where} body {media_type}", content["schema"]
