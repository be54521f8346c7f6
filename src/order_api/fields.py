"""Field types shared by request schemas: text a database can store, e-mail addresses."""

from __future__ import annotations

import unicodedata
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, StringConstraints


def reject_control_characters(value: str) -> str:
    """NUL cannot be stored by PostgreSQL, and no name or search needs a control character."""
    if any(unicodedata.category(character) == "Cc" for character in value):
        raise ValueError("must not contain control characters")
    return value


def normalise_email(value: str) -> str:
    """The one spelling we store and compare: validated, Unicode-normalised, then lower-cased.

    Lower-casing the local part too makes addresses case-insensitive (docs/decisions.md).
    """
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(str(error)) from None
    return checked.normalized.lower()


# One line of human text: trimmed, 1-200 characters, no control characters.
SingleLine = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(reject_control_characters),
]
SearchText = Annotated[
    str, StringConstraints(max_length=200), AfterValidator(reject_control_characters)
]
EmailAddress = Annotated[str, StringConstraints(max_length=320), AfterValidator(normalise_email)]
