"""Field types shared by request schemas: text a database can store, e-mail addresses."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)


def reject_control_characters(value: str) -> str:
    """NUL cannot be stored by PostgreSQL, and no name or search needs a control character."""
    if any(unicodedata.category(character) == "Cc" for character in value):
        raise ValueError("must not contain control characters")
    return value


def reject_control_characters_but_line_breaks(value: str) -> str:
    reject_control_characters(value.replace("\n", "").replace("\r", "").replace("\t", ""))
    return value


# What JSON Schema's `\s` is (ECMA-262): Python's whitespace and U+FEFF, which `str.strip` keeps.
BLANKS = "".join(c for c in map(chr, range(0x3001)) if c.isspace()) + "\ufeff"


def single_line(value: str) -> str:
    """Control characters are refused before trimming, so the schema's pattern says it exactly."""
    stripped = reject_control_characters(value).strip(BLANKS)
    if not stripped:
        raise ValueError("must not be blank")
    return stripped


# The rules above as JSON Schema patterns (Unicode category Cc is U+0000-U+001F, U+007F-U+009F),
# so clients and fuzzers know them: a schema-valid string is never refused.
_CONTROL = r"\u0000-\u001f\u007f-\u009f"
NO_CONTROL_PATTERN = rf"^[^{_CONTROL}]*$"
SINGLE_LINE_PATTERN = rf"^[^{_CONTROL}]*[^\s{_CONTROL}][^{_CONTROL}]*$"
PARAGRAPHS_PATTERN = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"


def normalise_email(value: str) -> str:
    """The one spelling we store and compare: validated, Unicode-normalised, then lower-cased.

    Lower-casing the local part too makes addresses case-insensitive (docs/decisions.md).
    """
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(str(error)) from None
    # RFC 5321's limit, which email-validator leaves to its strict mode; the schema states it.
    if len(checked.local_part) > 64:
        raise ValueError("The part before the @-sign is longer than 64 characters.")
    return checked.normalized.lower()


def integral_number(value: Any) -> Any:
    """5.0 is the integer 5: JSON has one number type, and JSON Schema's `integer` includes it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# For a strict int (`true`, `"5"` and `5.5` refused), lets `5.0` through as 5. It must come after
# the Field with the bounds, or pydantic cannot put them in the schema.
AS_INTEGER = BeforeValidator(integral_number)
# One line of human text: 1-200 characters, no control characters, trimmed.
SingleLine = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    AfterValidator(single_line),
    Field(json_schema_extra={"pattern": SINGLE_LINE_PATTERN}),
]
# Free text over several lines: up to 2,000 characters, line breaks and tabs allowed.
Paragraphs = Annotated[
    str,
    StringConstraints(max_length=2000),
    AfterValidator(reject_control_characters_but_line_breaks),
    Field(json_schema_extra={"pattern": PARAGRAPHS_PATTERN}),
]
SearchText = Annotated[
    str,
    StringConstraints(max_length=200),
    AfterValidator(reject_control_characters),
    Field(json_schema_extra={"pattern": NO_CONTROL_PATTERN}),
]
# The ASCII addresses email-validator accepts, as a pattern: a dot-atom of at most 64 characters,
# DNS labels (none with "--" at 3-4, which IDNA reserves), a top level that ends in a letter and
# is not special-use (.test, .local...). So a schema-valid address is never refused;
# internationalised ones (and valid xn-- labels) are accepted beyond it.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_NOT_RESERVED = r"(?![A-Za-z0-9]{2}--)"
_LABEL = rf"{_NOT_RESERVED}[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?"
_SPECIAL_USE = "|".join(
    "".join(f"[{letter}{letter.upper()}]" for letter in name) for name in SPECIAL_USE_DOMAIN_NAMES
)
_TOP_LEVEL = rf"(?!(?:{_SPECIAL_USE})$){_NOT_RESERVED}(?:[A-Za-z0-9][A-Za-z0-9-]{{0,61}})?[A-Za-z]"
EMAIL_PATTERN = rf"^(?=[^@]{{1,64}}@){_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+{_TOP_LEVEL}$"
EmailAddress = Annotated[
    str,
    StringConstraints(max_length=254),
    AfterValidator(normalise_email),
    Field(json_schema_extra={"format": "email", "pattern": EMAIL_PATTERN}),
]


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
