"""Schemathesis hooks, loaded by `schemathesis.toml` for every run from the project root.

Schemathesis reads the caller's own user id from the token's `sub` and tries it as every
`user_id`. Deactivating, demoting or deleting that account would turn the rest of the run into
401s, so the fuzzer aims those calls at an unknown user instead (a 404, still checked). The
caller's id comes from ORDER_API_FUZZ_OWN_USER_ID, which the contract test sets.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import schemathesis

OWN_USER_ID = "ORDER_API_FUZZ_OWN_USER_ID"


@schemathesis.hook
def before_call(
    context: schemathesis.HookContext, case: schemathesis.Case[Any], kwargs: dict[str, Any]
) -> None:
    own = os.environ.get(OWN_USER_ID)
    path_parameters = case.path_parameters or {}
    changes_an_account = case.method.upper() in {"PATCH", "DELETE"}
    if own and changes_an_account and str(path_parameters.get("user_id")) == own:
        path_parameters["user_id"] = str(uuid.uuid4())


@schemathesis.hook
def before_load_schema(context: schemathesis.HookContext, raw_schema: dict[str, Any]) -> None:
    """OpenAPI's link `requestBody` is the whole body, but Schemathesis merges it into a generated
    one unless told, and the generated lines would name products that do not exist. Told here,
    so the published schema carries no vendor extension."""
    for path_item in raw_schema.get("paths", {}).values():
        for operation in path_item.values():
            for response in operation.get("responses", {}).values():
                for link in response.get("links", {}).values():
                    if "requestBody" in link:
                        link["x-schemathesis"] = {"merge_body": False}
