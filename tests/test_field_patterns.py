"""The schema's string rules say what the validators do, read as JSON Schema reads them (ECMA).

A schema-valid value that the API refuses fails a client that trusts the schema; a refused value
the schema allows is what Schemathesis reports as "schema-valid request rejected".
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from order_api.notifications.emails import render_email
from order_api.platform.fields import (
    INVISIBLE,
    EmailAddress,
    Paragraphs,
    SearchText,
    SingleLine,
    refusable_code_points,
)

TEXT_FIELDS: dict[str, Any] = {
    "single line": SingleLine,
    "paragraphs": Paragraphs,
    "search text": SearchText,
}
# Every kind of character a fuzzer sends: controls, line breaks and separators, spaces of all
# sorts, bidi controls, zero-width and other format characters, private use, astral.
TRICKY = st.sampled_from(
    [
        *["\x00", "\x1f", "\x7f", "\x85", "\n", "\r", "\t", " ", "\u3000", "\u2028", "\u2029"],
        *["\u061c", "\u200e", "\u200f", "\u202a", "\u202e", "\u2066", "\u2069"],
        *["\u200b", "\u200d", "\u2060", "\ufeff", "\u00ad", "\U000e0041", "\U000f0000"],
        *["\ue000", "\uf8ff", "\U0010fffd", "\U0001f600", "\u0378", "a"],
    ]
)
TEXT = st.text(st.one_of(TRICKY, st.characters(codec="utf-8")), max_size=12) | st.builds(
    lambda filler, text: filler * 190 + text, st.sampled_from([" ", "a"]), st.text(max_size=20)
)


@pytest.fixture(scope="module", autouse=True)
def patterns_built() -> None:
    """The patterns are built on first use, by a walk of the Unicode database that takes longer
    than Hypothesis gives one example."""
    for field in TEXT_FIELDS.values():
        TypeAdapter(field).json_schema()


def accepted(adapter: TypeAdapter[Any], value: str) -> bool:
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


def schema_valid(adapter: TypeAdapter[Any], value: str) -> bool:
    return bool(jsonschema_rs.validator_for(adapter.json_schema()).is_valid(value))


@pytest.mark.parametrize("name", TEXT_FIELDS)
@settings(max_examples=400, derandomize=True, database=None)
@given(value=TEXT)
def test_a_text_is_schema_valid_exactly_when_it_is_accepted(name: str, value: str) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(TEXT_FIELDS[name])
    assert schema_valid(adapter, value) == accepted(adapter, value), repr(value)


def test_every_refused_character_is_unprintable_or_listed_invisible() -> None:
    """What lets the validators skip a printable text in two C-level calls."""
    printable = [chr(point) for point in refusable_code_points() if chr(point).isprintable()]
    assert printable
    assert set(printable) <= INVISIBLE


# Addresses built from parts, since Hypothesis cannot draw from the pattern's lookaheads: labels
# with hyphens anywhere (IDNA's "--" at 3-4 included), top levels of every shape, long locals.
LOCAL_PART = st.from_regex(r"[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,70}", fullmatch=True)
LABEL = st.from_regex(r"[a-z0-9-]{1,8}", fullmatch=True)
TOP_LEVEL = LABEL | st.sampled_from(["test", "TEST", "local", "xn--p1ai", "xn--zz", "c1", "com"])
ADDRESSES = st.builds(
    lambda local, labels, top: f"{local}@{'.'.join([*labels, top])}",
    LOCAL_PART,
    st.lists(LABEL, min_size=1, max_size=3),
    TOP_LEVEL,
)


@settings(max_examples=500, derandomize=True, database=None)
@given(value=ADDRESSES | st.emails())
def test_every_schema_valid_address_is_accepted(value: str) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(EmailAddress)
    if schema_valid(adapter, value):
        assert accepted(adapter, value), value


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.test",
        "ada@localhost",
        "ada@example",
        "a..b@example.com",
        "(ada)@x.com",
        "a@ab--cd.com",
        "a@xn--zz.com",
        "a@a.XN--ZZ",
        "a" * 65 + "@example.com",
        "josé@example.com",
        "用户@example.com",
        "=?utf-8?q?Ada?=@example.com",
        "a.=?x@example.com",
    ],
)
def test_addresses_the_validator_refuses_are_outside_the_schema(address: str) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(EmailAddress)
    assert not accepted(adapter, address)
    assert not schema_valid(adapter, address)


IDN_DOMAINS = st.sampled_from(["bücher.example.com", "例え.jp", "xn--bcher-kva.ch", "straße.de"])


@settings(max_examples=300, derandomize=True, database=None)
@given(value=ADDRESSES | st.emails() | st.builds("{}@{}".format, LOCAL_PART, IDN_DOMAINS))
def test_every_accepted_address_can_be_addressed_in_ascii(value: str) -> None:
    """What registration accepts, the mailer can put in a To header a plain relay takes."""
    adapter: TypeAdapter[Any] = TypeAdapter(EmailAddress)
    if not accepted(adapter, value):
        return
    stored = adapter.validate_python(value)
    payload = {"template": "welcome", "to": stored, "context": {"email": stored}}
    message = render_email(uuid.uuid4(), payload, "Shop <shop@example.com>", datetime.now(UTC))
    unfolded = message.as_string(policy=message.policy.clone(max_line_length=0))
    [to] = [line for line in unfolded.splitlines() if line.startswith("To: ")]
    assert to.isascii(), to
    assert "=?" not in to, to
