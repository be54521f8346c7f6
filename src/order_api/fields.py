"""Field types shared by request schemas: text a database can store, e-mail addresses."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, field_validator


def reject_control_characters(value: str) -> str:
    """NUL cannot be stored by PostgreSQL, and no name or search needs a control character."""
    if any(unicodedata.category(character) == "Cc" for character in value):
        raise ValueError("must not contain control characters")
    return value


def reject_control_characters_but_line_breaks(value: str) -> str:
    reject_control_characters(value.replace("\n", "").replace("\r", "").replace("\t", ""))
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
# Free text over several lines: up to 2,000 characters, line breaks and tabs allowed.
Paragraphs = Annotated[
    str,
    StringConstraints(max_length=2000),
    AfterValidator(reject_control_characters_but_line_breaks),
]
SearchText = Annotated[
    str, StringConstraints(max_length=200), AfterValidator(reject_control_characters)
]
EmailAddress = Annotated[str, StringConstraints(max_length=320), AfterValidator(normalise_email)]


class PartialUpdate(BaseModel):
    """A PATCH body: absent fields stay as they are; an explicit null is refused, never stored.

    Declare fields as `T | SkipJsonSchema[None] = None`, so the schema does not offer null.
    """

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def refuse_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null; leave the field out to keep its value")
        return value
