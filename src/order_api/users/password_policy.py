"""What a new password must be: 12-128 characters and not one of the 10,000 most common."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

MIN_LENGTH = 12
MAX_LENGTH = 128


@cache
def common_passwords() -> frozenset[str]:
    """The 10,000 most common passwords (xato.net ranking, as shipped by zxcvbn, MIT licence)."""
    text = files("order_api.users").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line for line in text.splitlines() if line)


def reject_common_password(value: str) -> str:
    if value.lower() in common_passwords():
        raise ValueError("is one of the 10,000 most common passwords; choose another")
    return value


# Kept exactly as typed (no trimming or normalisation): the login must match it verbatim.
NewPassword = Annotated[
    str,
    StringConstraints(min_length=MIN_LENGTH, max_length=MAX_LENGTH),
    AfterValidator(reject_common_password),
    # The one rule the schema cannot state as a constraint, so at least it says it.
    Field(description="12-128 characters, and not one of the 10,000 most common passwords."),
]
# What a login or a `current_password` may be: anything up to the maximum a password can have.
GivenPassword = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LENGTH)]
