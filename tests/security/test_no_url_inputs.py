"""API7:2023 (SSRF), reliability.md API-15: the API takes no URL from a caller, so the server has
nothing to fetch on a caller's behalf. A URL input added later fails here and forces an SSRF
review (an allow-list of hosts, no redirects, no private addresses) before it ships.

The walk covers every request body, query, path, header and cookie parameter of the served
OpenAPI document, through `$ref`, arrays, unions and nested objects.
"""

from __future__ import annotations

import re
from typing import Any

import httpx2

from tests.openapi_walk import Schema, fetch_schema, request_inputs, request_nodes

# JSON Schema's URL formats; "uri-reference" and "iri" would let a caller name a server too.
URL_FORMATS = {"uri", "url", "uri-reference", "iri", "iri-reference", "uri-template"}
# A field named like these carries an address the server would call, whatever its format says.
URL_NAME = re.compile(r"(url|uri|callback|webhook)$", re.IGNORECASE)


def every_url_field(document: Schema) -> list[str]:
    """Every place an operation takes a URL: by format, or by a property name like `…url`."""
    found = set()
    for node in request_nodes(document):
        if node.schema.get("format") in URL_FORMATS:
            found.add(f"{node.where} (format {node.schema['format']})")
        if node.name is not None and URL_NAME.search(node.name):
            found.add(node.where)
    return sorted(found)


async def test_no_operation_takes_a_url_from_the_caller(client: httpx2.AsyncClient) -> None:
    document = await fetch_schema(client)
    inputs = list(request_inputs(document))
    # The walk reaches the API's bodies and parameters, not just a handful of health routes.
    assert sum(" body " in where for where, _ in inputs) >= 8, inputs
    assert sum(" query " in where for where, _ in inputs) >= 8, inputs
    assert every_url_field(document) == []


def test_the_walk_finds_url_fields_wherever_they_hide() -> None:
    """Each kind of URL input the walk must catch, planted in a small document."""
    document: dict[str, Any] = {
        "paths": {
            "/hooks": {
                "post": {
                    "parameters": [
                        {"in": "query", "name": "callback", "schema": {"type": "string"}},
                        {"in": "header", "name": "X-Target", "schema": {"format": "uri"}},
                    ],
                    "requestBody": {
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Hook"}}
                        }
                    },
                }
            }
        },
        "components": {
            "schemas": {
                "Hook": {
                    "properties": {
                        "name": {"type": "string"},
                        "targets": {"items": {"$ref": "#/components/schemas/Target"}},
                        "next": {
                            "anyOf": [{"$ref": "#/components/schemas/Hook"}, {"type": "null"}]
                        },
                    }
                },
                "Target": {
                    "properties": {
                        "webhook": {"type": "string"},
                        "avatarUrl": {"type": "string"},
                        "where": {"type": "string", "format": "iri"},
                    }
                },
            }
        },
    }
    assert every_url_field(document) == [
        "POST /hooks body application/json.targets[].avatarUrl",
        "POST /hooks body application/json.targets[].webhook",
        "POST /hooks body application/json.targets[].where (format iri)",
        "POST /hooks header X-Target.X-Target (format uri)",
        "POST /hooks query callback.callback",
    ]
