"""The schema's string rules say what the validators do, read as JSON Schema reads them (ECMA).

A schema-valid value that the API refuses fails a client that trusts the schema; a refused value
the schema allows is what Schemathesis reports as "schema-valid request rejected".
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from order_api.fields import EmailAddress, Paragraphs, SearchText, SingleLine

TEXT_FIELDS: dict[str, Any] = {
    "single line": SingleLine,
    "paragraphs": Paragraphs,
    "search text": SearchText,
}
# Every kind of character a fuzzer sends: controls, line breaks, spaces of all sorts, astral.
TRICKY = st.sampled_from(
    ["\x00", "\x1f", "\x7f", "\x85", "\n", "\r", "\t", " ", "\u3000", "\ufeff", "a"]
)
TEXT = st.text(st.one_of(TRICKY, st.characters(codec="utf-8")), max_size=12) | st.builds(
    lambda filler, text: filler * 190 + text, st.sampled_from([" ", "a"]), st.text(max_size=20)
)


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
    ],
)
def test_addresses_the_validator_refuses_are_outside_the_schema(address: str) -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(EmailAddress)
    assert not accepted(adapter, address)
    assert not schema_valid(adapter, address)
