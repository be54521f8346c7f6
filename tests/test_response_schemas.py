"""No response can carry a password, a hash or an internal field (object
property level authorization), checked by walking every response schema of the OpenAPI document.

Response models are separate classes from the database models, so this holds only as long as
nobody returns a model that grew such a field: the walk catches that the day it happens.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx2

from tests.openapi_walk import Schema, fetch_schema, response_schemas, schema_nodes

# A password, any hash or secret, and the outbox's and idempotency records' internals.
FORBIDDEN_PROPERTY = re.compile(r"password|hash|secret|lease|attempts|request_body", re.IGNORECASE)


def property_names(schema: Schema, document: Schema) -> Iterator[str]:
    """Every property name reachable from `schema`, through refs, arrays and unions."""
    names = (node.name for node in schema_nodes("response", schema, document))
    return (name for name in names if name is not None)


async def test_no_response_schema_offers_a_secret_or_internal_field(
    client: httpx2.AsyncClient,
) -> None:
    document = await fetch_schema(client)
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
