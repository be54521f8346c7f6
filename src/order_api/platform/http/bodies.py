"""JSON request bodies with each object's keys once: `{"quantity": 1, "quantity": 50}` is refused.

Python's json keeps the last duplicate silently, so a proxy, a signature check or a log that reads
the first one would see another request than the service acts on; for the same reason a body is
read as UTF-8 and nothing else. Written here because FastAPI and Starlette offer no switch for
either: one route class, used by every router that takes JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from order_api.platform.errors import DUPLICATE_KEY

# What `UniqueKeysRequest.parsed_json` holds until the body is read: `null` is a JSON body too.
NOT_PARSED: Any = object()


class DuplicateKeyError(json.JSONDecodeError):
    def __init__(self, key: str) -> None:
        super().__init__(f"{DUPLICATE_KEY} {key!r}", "", 0)


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object_pairs_hook: the object as a dict, refused when a key repeats."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise DuplicateKeyError(key)
        found[key] = value
    return found


class UniqueKeysRequest(Request):
    """A request whose `json()` refuses repeated keys; the parsed body is kept on an attribute
    of this class, not on Starlette's own cache."""

    parsed_json: Any = NOT_PARSED

    async def json(self) -> Any:
        if self.parsed_json is NOT_PARSED:
            # UTF-8 only, BOM refused (RFC 8259 §8.1): given bytes, json.loads would also read
            # UTF-16 and UTF-32, so a proxy that reads UTF-8 would see another request.
            text = (await self.body()).decode("utf-8")
            self.parsed_json = json.loads(text, object_pairs_hook=unique_keys)
        return self.parsed_json


class UniqueKeysRoute(APIRoute):
    """A route whose JSON body is parsed by `UniqueKeysRequest`; FastAPI answers the refusal as
    invalid JSON, which `errors.validation_error_handler` turns into a 422 naming the key."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def parse_with_unique_keys(request: Request) -> Response:
            return await handler(UniqueKeysRequest(request.scope, request.receive))

        return parse_with_unique_keys
