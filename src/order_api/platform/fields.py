"""Field types shared by request schemas: text safe to store, show and mail; e-mail addresses."""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any

from email_validator import (
    SPECIAL_USE_DOMAIN_NAMES,
    EmailNotValidError,
    ValidatedEmail,
    validate_email,
)
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)
from pydantic_core import PydanticCustomError

# Bidi_Control (Unicode's PropList): the explicit embeddings, overrides and isolates, known by
# their bidirectional class, and the three implicit marks, known by name.
_EXPLICIT_BIDI_CLASSES = frozenset({"LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"})
_BIDI_MARKS = frozenset(
    unicodedata.lookup(name)
    for name in ("LEFT-TO-RIGHT MARK", "RIGHT-TO-LEFT MARK", "ARABIC LETTER MARK")
)
BIDI_CONTROLS = "bidirectional controls (such as U+202E, which displays text reversed)"
# What a 422 says of each Unicode category a text may refuse.
CATEGORY_NAMES = {
    "Cc": "control characters (Unicode category Cc)",
    "Zl": "line separators (Unicode category Zl)",
    "Zp": "paragraph separators (Unicode category Zp)",
    "Cf": "invisible format characters such as zero-width spaces and byte order marks "
    "(Unicode category Cf)",
}
LAST_CODE_POINT = 0x10FFFF
# Characters that show as nothing though no category says so: Unicode's
# Default_Ignorable_Code_Point outside Cf (fillers, variation selectors; written out because
# unicodedata lacks the property), and the blank braille pattern. A name of them looks empty.
_INVISIBLE_RANGES = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180D),
    (0x180F, 0x180F),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xE0100, 0xE01EF),
)
INVISIBLE = frozenset(
    chr(code_point) for first, last in _INVISIBLE_RANGES for code_point in range(first, last + 1)
)
INVISIBLE_NAME = "characters that show as nothing (such as U+3164 HANGUL FILLER)"


def is_bidi_control(character: str) -> bool:
    return (
        character in _BIDI_MARKS or unicodedata.bidirectional(character) in _EXPLICIT_BIDI_CLASSES
    )


@dataclass(frozen=True)
class RefusedCharacters:
    """The characters a kind of text refuses: the bidi controls, whole Unicode categories less
    the few in `kept`, and any `invisible` ones. Unpaired surrogates never get here: pydantic's
    `str` refuses them."""

    categories: frozenset[str]
    kept: str = ""
    invisible: frozenset[str] = frozenset()

    def reason(self, character: str) -> str | None:
        """What class `character` is refused as, or None when it is allowed."""
        if character in self.kept:
            return None
        if is_bidi_control(character):
            return BIDI_CONTROLS
        category = unicodedata.category(character)
        if category in self.categories:
            return CATEGORY_NAMES[category]
        return INVISIBLE_NAME if character in self.invisible else None

    def check(self, value: str) -> str:
        # Every refused character but the invisible ones is unprintable: two C-level scans.
        if value.isprintable() and self.invisible.isdisjoint(value):
            return value
        for character in value:
            reason = self.reason(character)
            if reason is not None:
                raise PydanticCustomError(
                    "refused_character",
                    "must not contain {refused}; found U+{code_point}",
                    {"refused": reason, "code_point": f"{ord(character):04X}"},
                )
        return value


# A name or product name reaches the board, user lists and (product names) e-mails as one line:
# nothing that breaks a line, reorders or hides text. Private-use and unassigned code points show
# as a glyph or a box, and refusing them would put 137,000+ code points in the pattern.
ONE_LINE = RefusedCharacters(frozenset({"Cc", "Zl", "Zp", "Cf"}), invisible=INVISIBLE)
# Descriptions keep line breaks and tabs, and zero-width joiners (emoji sequences, scripts).
PARAGRAPHS = RefusedCharacters(frozenset({"Cc", "Zl", "Zp"}), kept="\n\r\t")
SEARCH = RefusedCharacters(frozenset({"Cc", "Zl", "Zp"}))


def reject_control_characters(value: str) -> str:
    """NUL cannot be stored by PostgreSQL, and no search needs a control, separator or bidi."""
    return SEARCH.check(value)


def reject_control_characters_but_line_breaks(value: str) -> str:
    return PARAGRAPHS.check(value)


# What JSON Schema's `\s` is (ECMA-262): Python's whitespace and U+FEFF, which `str.strip` keeps.
BLANKS = "".join(c for c in map(chr, range(0x3001)) if c.isspace()) + "\ufeff"


def single_line(value: str) -> str:
    """Refused characters are refused before trimming, so the schema's pattern says it exactly."""
    stripped = ONE_LINE.check(value).strip(BLANKS)
    if not stripped:
        raise ValueError("must not be blank")
    return stripped


def _pattern_character(code_point: int) -> str:
    # BMP characters as ECMA-262 escapes; astral ones literally, which the `u` flag that JSON
    # Schema asks for (and Python's re, Rust's regex) read as one code point.
    return f"\\u{code_point:04x}" if code_point <= 0xFFFF else chr(code_point)


@functools.cache
def refusable_code_points() -> list[int]:
    """Every code point some rule may refuse, in order: the categories of CATEGORY_NAMES, the
    bidi controls and INVISIBLE. One walk of the Unicode database (0.3-1 s), so it waits until a
    schema is asked for rather than slowing every process's start."""
    everything = "".join(map(chr, range(LAST_CODE_POINT + 1)))
    categories = map(unicodedata.category, everything)
    bidi_classes = map(unicodedata.bidirectional, everything)
    found = {
        code_point
        for code_point, (category, bidi_class) in enumerate(
            zip(categories, bidi_classes, strict=True)
        )
        if category in CATEGORY_NAMES or bidi_class in _EXPLICIT_BIDI_CLASSES
    }
    return sorted(found | {ord(mark) for mark in _BIDI_MARKS} | {ord(c) for c in INVISIBLE})


@functools.cache
def refused_class(refused: RefusedCharacters) -> str:
    """The refused characters as the inside of a regex character class, from this Python's
    Unicode database. Surrogates are not among them: a JSON Schema string cannot hold one."""
    runs: list[list[int]] = []
    for code_point in refusable_code_points():
        if refused.reason(chr(code_point)) is None:
            continue
        if runs and runs[-1][1] == code_point - 1:
            runs[-1][1] = code_point
        else:
            runs.append([code_point, code_point])
    return "".join(
        _pattern_character(first)
        if first == last
        else f"{_pattern_character(first)}-{_pattern_character(last)}"
        for first, last in runs
    )


# The rules above as JSON Schema patterns, so clients and fuzzers know them: a schema-valid string
# is never refused.
def single_line_pattern(schema: dict[str, Any]) -> None:
    refused = refused_class(ONE_LINE)
    schema["pattern"] = rf"^[^{refused}]*[^\s{refused}][^{refused}]*$"


def paragraphs_pattern(schema: dict[str, Any]) -> None:
    schema["pattern"] = rf"^[^{refused_class(PARAGRAPHS)}]*$"


def search_pattern(schema: dict[str, Any]) -> None:
    schema["pattern"] = rf"^[^{refused_class(SEARCH)}]*$"


def checked_email(value: str) -> ValidatedEmail:
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as error:
        raise ValueError(str(error)) from None
    # RFC 5321's limit, which email-validator leaves to its strict mode; the schema states it.
    if len(checked.local_part) > 64:
        raise ValueError("The part before the @-sign is longer than 64 characters.")
    return checked


def normalise_email(value: str) -> str:
    """The one spelling we store and compare: validated, Unicode-normalised, then lower-cased.

    Lower-casing the local part too makes addresses case-insensitive (docs/decisions.md). Used to
    find accounts too, so it accepts every address ever stored; new ones pass `deliverable_email`.
    """
    return checked_email(value).normalized.lower()


def deliverable_email(value: str) -> str:
    """`normalise_email` for an address we will send to, refusing what no relay delivers as is.

    An internationalised domain is fine: e-mails go to its IDNA (xn--) spelling.
    """
    checked = checked_email(value)
    # Mail to such a mailbox needs SMTPUTF8 end to end, which relays do not promise.
    if checked.smtputf8:
        raise ValueError("The address must be ASCII before the @-sign.")
    # Mail programs (and Python's parser) decode an RFC 2047 encoded-word even in an address.
    if "=?" in checked.local_part:
        raise ValueError('The part before the @-sign must not contain "=?".')
    return checked.normalized.lower()


def integral_number(value: Any) -> Any:
    """5.0 is the integer 5: JSON has one number type, and JSON Schema's `integer` includes it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# For a strict int (`true`, `"5"` and `5.5` refused), lets `5.0` through as 5. It must come after
# the Field with the bounds, or pydantic cannot put them in the schema.
AS_INTEGER = BeforeValidator(integral_number)
# One line of human text: 1-200 characters, none of ONE_LINE's refused characters, trimmed.
SingleLine = Annotated[
    str,
    StringConstraints(min_length=1, max_length=200),
    AfterValidator(single_line),
    Field(json_schema_extra=single_line_pattern),
]
# Free text over several lines: up to 2,000 characters, line breaks and tabs allowed.
Paragraphs = Annotated[
    str,
    StringConstraints(max_length=2000),
    AfterValidator(reject_control_characters_but_line_breaks),
    Field(json_schema_extra=paragraphs_pattern),
]
SearchText = Annotated[
    str,
    StringConstraints(max_length=200),
    AfterValidator(reject_control_characters),
    Field(json_schema_extra=search_pattern),
]
# The ASCII addresses email-validator accepts, as a pattern: a dot-atom of at most 64 characters,
# DNS labels (none with "--" at 3-4, which IDNA reserves), a top level that ends in a letter and
# is not special-use (.test, .local...), and no "=?" before the @. So a schema-valid address is
# never refused; internationalised domains (and valid xn-- labels) are accepted beyond it.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_NOT_RESERVED = r"(?![A-Za-z0-9]{2}--)"
_LABEL = rf"{_NOT_RESERVED}[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?"
_SPECIAL_USE = "|".join(
    "".join(f"[{letter}{letter.upper()}]" for letter in name) for name in SPECIAL_USE_DOMAIN_NAMES
)
_TOP_LEVEL = rf"(?!(?:{_SPECIAL_USE})$){_NOT_RESERVED}(?:[A-Za-z0-9][A-Za-z0-9-]{{0,61}})?[A-Za-z]"
EMAIL_PATTERN = rf"^(?=[^@]{{1,64}}@)(?![^@]*=\?){_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+{_TOP_LEVEL}$"
EmailAddress = Annotated[
    str,
    StringConstraints(max_length=254),
    AfterValidator(deliverable_email),
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
