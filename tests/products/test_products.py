"""The catalogue through the API: who may change it, what it accepts, and what each caller sees.

Every refused change is checked against the database too: a 4xx must leave no trace.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from order_api.products.models import Product
from order_api.users.models import Role
from tests.accounts import Account, Shop, ShopFactory, bearer
from tests.catalogue import PRODUCTS, create_product
from tests.test_errors import assert_problem

LONG_TEXT = "x" * 10_000
VALID_BODY: dict[str, Any] = {"name": "Ceramic mug", "price_cents": 1450, "stock": 25}


async def product_count(shop: Shop) -> int:
    sessionmaker: async_sessionmaker[AsyncSession] = shop.app.state.sessionmaker
    async with sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(Product)) or 0


async def listed_names(
    shop: Shop, headers: dict[str, str] | None = None, **params: Any
) -> list[str]:
    response = await shop.client.get(PRODUCTS, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


async def read_as_staff(shop: Shop, staff: Account, product_id: str) -> dict[str, Any]:
    response = await shop.client.get(f"{PRODUCTS}/{product_id}", headers=staff.headers)
    assert response.status_code == 200, response.text
    product: dict[str, Any] = response.json()
    return product


def as_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value)
    assert moment.utcoffset() is not None, f"{value} has no time zone"
    return moment


def assert_field_error(response: httpx2.Response, loc: list[str | int]) -> None:
    """A 422 whose errors name the field; PATCH's optional fields add a union-branch suffix."""
    body = assert_problem(response, 422, "validation_error")
    assert any(error["loc"][: len(loc)] == loc for error in body["errors"]), body["errors"]


# Creating


@pytest.mark.parametrize("role", [Role.STAFF, Role.ADMIN])
async def test_staff_and_admin_create_products(shop: Shop, role: Role) -> None:
    author = await shop.account(role)
    body = {**VALID_BODY, "description": "Holds 350 ml."}

    response = await shop.client.post(PRODUCTS, json=body, headers=author.headers)

    assert response.status_code == 201, response.text
    created = response.json()
    uuid.UUID(created["id"])
    assert {key: created[key] for key in body} == body
    assert created["currency"] == "EUR"
    assert created["is_active"] is True
    as_time(created["created_at"])
    assert created["updated_at"] == created["created_at"]
    anonymous_read = await shop.client.get(f"{PRODUCTS}/{created['id']}")
    assert anonymous_read.json() == created


async def test_currency_comes_from_the_settings(make_shop: ShopFactory) -> None:
    shop = await make_shop(currency="CHF")
    staff = await shop.account(Role.STAFF)

    product = await create_product(shop, staff.headers)

    assert product["currency"] == "CHF"
    assert (await shop.client.get(PRODUCTS)).json()["items"][0]["currency"] == "CHF"


async def test_name_is_trimmed_and_description_defaults_to_empty(shop: Shop) -> None:
    staff = await shop.account(Role.STAFF)

    product = await create_product(shop, staff.headers, name="  Pour-over dripper  ")

    assert product["name"] == "Pour-over dripper"
    assert product["description"] == ""


async def test_largest_price_is_accepted(shop: Shop) -> None:
    staff = await shop.account(Role.STAFF)

    product = await create_product(shop, staff.headers, price_cents=100_000_000, stock=0)

    assert (product["price_cents"], product["stock"]) == (100_000_000, 0)


# Each invalid value is refused with the field named, whether it is created or patched in.
INVALID_FIELDS = [
    pytest.param("price_cents", -1, id="negative-price"),
    pytest.param("price_cents", 100_000_001, id="price-over-limit"),
    pytest.param("stock", -1, id="negative-stock"),
    pytest.param("name", "Mug\x00", id="name-with-nul"),
    pytest.param("name", LONG_TEXT, id="name-10000-chars"),
    pytest.param("name", "   ", id="name-blank"),
    pytest.param("description", "Bell\x07", id="description-with-control-char"),
    pytest.param("description", "Line\x1bbreak", id="description-with-escape"),
]


@pytest.mark.parametrize(("field", "value"), INVALID_FIELDS)
async def test_invalid_field_creates_nothing(shop: Shop, field: str, value: object) -> None:
    staff = await shop.account(Role.STAFF)

    response = await shop.client.post(
        PRODUCTS, json={**VALID_BODY, field: value}, headers=staff.headers
    )

    assert_field_error(response, ["body", field])
    assert await product_count(shop) == 0


@pytest.mark.parametrize(("field", "value"), INVALID_FIELDS)
async def test_invalid_field_changes_nothing(shop: Shop, field: str, value: object) -> None:
    staff = await shop.account(Role.STAFF)
    product = await create_product(shop, staff.headers)

    response = await shop.client.patch(
        f"{PRODUCTS}/{product['id']}", json={field: value}, headers=staff.headers
    )

    assert_field_error(response, ["body", field])
    assert await read_as_staff(shop, staff, product["id"]) == product


async def test_description_keeps_line_breaks_and_tabs(shop: Shop) -> None:
    staff = await shop.account(Role.STAFF)
    description = "Ceramic burrs.\r\n\tAdjustable grind."

    product = await create_product(shop, staff.headers, description=description)

    assert product["description"] == description


@pytest.mark.parametrize("field", ["id", "currency", "units_sold", "created_at"])
async def test_fields_staff_may_not_set_are_refused_on_create(shop: Shop, field: str) -> None:
    staff = await shop.account(Role.STAFF)
    value = str(uuid.uuid4()) if field == "id" else 5

    response = await shop.client.post(
        PRODUCTS, json={**VALID_BODY, field: value}, headers=staff.headers
    )

    assert_field_error(response, ["body", field])
    assert await product_count(shop) == 0


# Changing


async def test_patch_changes_every_editable_field(shop: Shop) -> None:
    staff = await shop.account(Role.STAFF)
    product = await create_product(shop, staff.headers)
    changes = {
        "name": "Hand grinder",
        "description": "Ceramic burrs.",
        "price_cents": 5900,
        "stock": 8,
        "is_active": False,
    }

    response = await shop.client.patch(
        f"{PRODUCTS}/{product['id']}", json=changes, headers=staff.headers
    )

    assert response.status_code == 200, response.text
    patched = response.json()
    assert {key: patched[key] for key in changes} == changes
    assert (patched["id"], patched["created_at"]) == (product["id"], product["created_at"])
    assert as_time(patched["updated_at"]) > as_time(product["updated_at"])
    assert await read_as_staff(shop, staff, product["id"]) == patched


async def test_patch_leaves_absent_fields_alone(shop: Shop) -> None:
    admin = await shop.account(Role.ADMIN)
    product = await create_product(shop, admin.headers, description="Holds 350 ml.")

    response = await shop.client.patch(
        f"{PRODUCTS}/{product['id']}", json={"price_cents": 1}, headers=admin.headers
    )

    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["price_cents"] == 1
    unchanged = ("name", "description", "stock", "is_active", "currency")
    assert {key: patched[key] for key in unchanged} == {key: product[key] for key in unchanged}


@pytest.mark.parametrize("field", ["units_sold", "currency", "id", "created_at", "colour"])
async def test_patch_with_an_unknown_field_is_refused(shop: Shop, field: str) -> None:
    staff = await shop.account(Role.STAFF)
    product = await create_product(shop, staff.headers)

    response = await shop.client.patch(
        f"{PRODUCTS}/{product['id']}", json={"name": "Renamed", field: 1}, headers=staff.headers
    )

    assert_field_error(response, ["body", field])
    assert await read_as_staff(shop, staff, product["id"]) == product


@pytest.mark.parametrize("field", ["name", "description", "price_cents", "stock", "is_active"])
async def test_patch_with_an_explicit_null_is_refused(shop: Shop, field: str) -> None:
    staff = await shop.account(Role.STAFF)
    product = await create_product(shop, staff.headers)

    response = await shop.client.patch(
        f"{PRODUCTS}/{product['id']}", json={field: None}, headers=staff.headers
    )

    assert_field_error(response, ["body", field])
    assert await read_as_staff(shop, staff, product["id"]) == product


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_changing_an_unknown_product_is_404(shop: Shop, method: str) -> None:
    staff = await shop.account(Role.STAFF)

    response = await shop.client.request(
        method,
        f"{PRODUCTS}/{uuid.uuid4()}",
        json={"name": "Ghost"} if method == "PATCH" else None,
        headers=staff.headers,
    )

    assert_problem(response, 404, "not_found")
    assert await product_count(shop) == 0


# Deleting: taken off sale, kept for the orders that name it


async def test_delete_hides_the_product_from_customers_but_not_from_staff(shop: Shop) -> None:
    staff = await shop.account(Role.STAFF)
    customer = await shop.account(Role.CUSTOMER)
    kept = await create_product(shop, staff.headers, name="Kept")
    withdrawn = await create_product(shop, staff.headers, name="Withdrawn")
    url = f"{PRODUCTS}/{withdrawn['id']}"

    response = await shop.client.delete(url, headers=staff.headers)

    assert response.status_code == 204, response.text
    assert response.content == b""
    assert_problem(await shop.client.get(url), 404, "not_found")
    assert_problem(await shop.client.get(url, headers=customer.headers), 404, "not_found")
    assert await listed_names(shop) == ["Kept"]
    assert await listed_names(shop, customer.headers) == ["Kept"]
    assert await listed_names(shop, staff.headers) == ["Kept", "Withdrawn"]
    as_staff = await read_as_staff(shop, staff, withdrawn["id"])
    assert as_staff["is_active"] is False
    assert await product_count(shop) == 2
    assert (await read_as_staff(shop, staff, kept["id"]))["is_active"] is True


async def test_a_deleted_product_is_reactivated_by_patch(shop: Shop) -> None:
    admin = await shop.account(Role.ADMIN)
    product = await create_product(shop, admin.headers)
    url = f"{PRODUCTS}/{product['id']}"
    assert (await shop.client.delete(url, headers=admin.headers)).status_code == 204

    response = await shop.client.patch(url, json={"is_active": True}, headers=admin.headers)

    assert response.status_code == 200, response.text
    assert (await shop.client.get(url)).json()["is_active"] is True


# Who may change the catalogue

CHANGES = [
    pytest.param("POST", False, id="create"),
    pytest.param("PATCH", True, id="patch"),
    pytest.param("DELETE", True, id="delete"),
]


@pytest.mark.parametrize(("method", "on_product"), CHANGES)
@pytest.mark.parametrize(
    ("role", "status", "code"),
    [
        pytest.param(None, 401, "not_authenticated", id="anonymous"),
        pytest.param(Role.CUSTOMER, 403, "forbidden", id="customer"),
    ],
)
async def test_only_staff_change_the_catalogue(
    shop: Shop, method: str, on_product: bool, role: Role | None, status: int, code: str
) -> None:
    staff = await shop.account(Role.STAFF)
    product = await create_product(shop, staff.headers)
    headers = (await shop.account(role)).headers if role else {}
    url = f"{PRODUCTS}/{product['id']}" if on_product else PRODUCTS
    body = None if method == "DELETE" else {**VALID_BODY, "name": "Changed"}

    response = await shop.client.request(method, url, json=body, headers=headers)

    assert_problem(response, status, code)
    assert await product_count(shop) == 1
    assert await read_as_staff(shop, staff, product["id"]) == product


# Reading and listing


async def test_a_malformed_id_and_a_random_one_are_both_404(shop: Shop) -> None:
    """An id that is not a UUID names no product, exactly like an unknown one."""
    assert_problem(await shop.client.get(f"{PRODUCTS}/not-a-uuid"), 404, "not_found")
    assert_problem(await shop.client.get(f"{PRODUCTS}/{uuid.uuid4()}"), 404, "not_found")


async def test_an_id_in_capitals_or_without_hyphens_names_the_same_product(shop: Shop) -> None:
    staff = await shop.account(Role.STAFF)
    product = await create_product(shop, staff.headers)
    for spelling in (product["id"].upper(), product["id"].replace("-", "")):
        response = await shop.client.get(f"{PRODUCTS}/{spelling}")
        assert response.status_code == 200, response.text
        assert response.json()["id"] == product["id"]


async def test_other_methods_on_popular_are_405_not_a_bad_id(shop: Shop) -> None:
    staff = await shop.account(Role.STAFF)
    for method in ("PATCH", "DELETE"):
        response = await shop.client.request(method, f"{PRODUCTS}/popular", headers=staff.headers)
        assert_problem(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "GET"


async def test_listing_is_sorted_by_name(shop: Shop) -> None:
    staff = await shop.account(Role.STAFF)
    for name in ["Cherry tin", "Apple press", "Banana bowl"]:
        await create_product(shop, staff.headers, name=name)

    response = await shop.client.get(PRODUCTS)

    assert response.status_code == 200, response.text
    page = response.json()
    assert [item["name"] for item in page["items"]] == ["Apple press", "Banana bowl", "Cherry tin"]
    assert (page["total"], page["page"], page["page_size"]) == (3, 1, 20)


async def test_listing_pages_add_up_to_the_whole(shop: Shop) -> None:
    staff = await shop.account(Role.STAFF)
    names = [f"Tea {letter}" for letter in "edcba"]
    for name in names:
        await create_product(shop, staff.headers, name=name)

    pages = [
        (await shop.client.get(PRODUCTS, params={"page": number, "page_size": 2})).json()
        for number in (1, 2, 3, 4)
    ]

    assert [len(page["items"]) for page in pages] == [2, 2, 1, 0]
    assert {page["total"] for page in pages} == {5}
    assert [page["page"] for page in pages] == [1, 2, 3, 4]
    assert {page["page_size"] for page in pages} == {2}
    assert [item["name"] for page in pages for item in page["items"]] == sorted(names)


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        pytest.param("ESPRESSO", ["Espresso beans", "espresso cup"], id="any-case"),
        pytest.param("so b", ["Espresso beans"], id="inside-the-name"),
        pytest.param("%", ["100% Arabica"], id="percent-is-literal"),
        pytest.param("100%", ["100% Arabica"], id="percent-after-text"),
        pytest.param("a_b", ["Tea_bag"], id="underscore-is-literal"),
        pytest.param("_", ["Tea_bag"], id="underscore-alone"),
        pytest.param("c/d", ["AC/DC"], id="the-escape-character-is-literal"),
        pytest.param("Oolong", [], id="no-match"),
    ],
)
async def test_search_matches_part_of_the_name(shop: Shop, q: str, expected: list[str]) -> None:
    staff = await shop.account(Role.STAFF)
    for name in [
        "Espresso beans",
        "espresso cup",
        "100% Arabica",
        "100 Arabica",
        "Tea_bag",
        "AC/DC",
    ]:
        await create_product(shop, staff.headers, name=name)
    await create_product(shop, staff.headers, name="Teaxbag")

    response = await shop.client.get(PRODUCTS, params={"q": q})

    assert response.status_code == 200, response.text
    page = response.json()
    assert sorted(item["name"] for item in page["items"]) == sorted(expected)
    assert page["total"] == len(expected)


async def test_search_and_paging_count_only_what_the_caller_may_see(shop: Shop) -> None:
    staff = await shop.account(Role.STAFF)
    for name in ["Mug small", "Mug large", "Mug withdrawn"]:
        await create_product(shop, staff.headers, name=name, is_active=name != "Mug withdrawn")

    public = (await shop.client.get(PRODUCTS, params={"q": "mug", "page_size": 1})).json()
    for_staff = (
        await shop.client.get(PRODUCTS, params={"q": "mug", "page_size": 1}, headers=staff.headers)
    ).json()

    assert (public["total"], [item["name"] for item in public["items"]]) == (2, ["Mug large"])
    assert for_staff["total"] == 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"page_size": 0}, "page_size", id="page-size-0"),
        pytest.param({"page_size": 101}, "page_size", id="page-size-101"),
        pytest.param({"page_size": 1000}, "page_size", id="page-size-1000"),
        pytest.param({"page": 0}, "page", id="page-0"),
        pytest.param({"q": LONG_TEXT}, "q", id="q-10000-chars"),
        pytest.param({"q": "\x00"}, "q", id="q-nul"),
    ],
)
async def test_listing_refuses_bad_query_parameters(
    shop: Shop, params: dict[str, Any], field: str
) -> None:
    assert_field_error(await shop.client.get(PRODUCTS, params=params), ["query", field])


async def test_a_percent_encoded_nul_in_q_is_refused(shop: Shop) -> None:
    # Written out, so the test does not depend on how the client encodes a NUL.
    assert_field_error(await shop.client.get(f"{PRODUCTS}?q=%00"), ["query", "q"])


async def test_a_bad_token_on_the_public_listing_is_401(shop: Shop) -> None:
    staff = await shop.account(Role.STAFF)
    await create_product(shop, staff.headers)

    rejected = await shop.client.get(PRODUCTS, headers=bearer("not-a-jwt"))
    anonymous = await shop.client.get(PRODUCTS)

    assert_problem(rejected, 401, "invalid_token")
    assert anonymous.status_code == 200, anonymous.text
    assert anonymous.json()["total"] == 1


@pytest.mark.parametrize(
    "fields",
    [{"price_cents": "1999"}, {"price_cents": 19.99}, {"stock": True}, {"is_active": "yes"}],
    ids=["price-string", "price-fraction", "stock-bool", "active-string"],
)
async def test_numbers_and_flags_must_have_their_json_types(
    shop: Shop, fields: dict[str, object]
) -> None:
    staff = await shop.account(Role.STAFF)
    body = {"name": "Typed", "price_cents": 100, "stock": 1, **fields}
    response = await shop.client.post(PRODUCTS, json=body, headers=staff.headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
