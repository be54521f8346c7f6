"""Schemathesis hooks for the contract test, loaded through SCHEMATHESIS_HOOKS.

Schemathesis reads the caller's own user id from the token's `sub` and tries it as every
`user_id`. Deactivating, demoting or deleting that account would turn the rest of the run into
401s, so the fuzzer aims those calls at an unknown user instead (a 404, still checked).
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
