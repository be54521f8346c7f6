"""What we accept we can deliver, and a mail to an address nobody verified carries no user text.

Names and product names refuse the characters that break a mail header or hide what a text says
(line and paragraph separators, bidirectional controls, zero-width and other format
characters); descriptions and searches refuse the separators and bidi controls;
addresses must be ASCII before the @ and free of encoded-words; an internationalised domain is
delivered to its IDNA form. All through the HTTP API, the real SMTP test server and the outbox.
"""

from __future__ import annotations

import base64
from email.message import EmailMessage
from typing import Any

import httpx2
import pytest

from order_api.users.models import Role
from order_api.users.schemas import UserCreate
from order_api.users.service import register_user
from tests.accounts import PASSWORD, Shop, ShopFactory, bearer, new_email
from tests.catalogue import PRODUCTS, create_product, order
from tests.jobs.conftest import FAST_JOBS
from tests.smtp_server import SmtpServer
from tests.test_errors import assert_problem
from tests.waiting import wait_until

USERS = "/api/v1/users"
ME = "/api/v1/users/me"

# One of each character a one-line text refuses, by the class the 422 must name.
LINE_BREAKERS = {
    "line separator U+2028": ("\u2028", "line separators"),
    "paragraph separator U+2029": ("\u2029", "paragraph separators"),
    "next line U+0085": ("\x85", "control characters"),
    "vertical tab": ("\x0b", "control characters"),
    "form feed": ("\x0c", "control characters"),
    "file separator U+001C": ("\x1c", "control characters"),
    "group separator U+001D": ("\x1d", "control characters"),
    "record separator U+001E": ("\x1e", "control characters"),
}
BIDI_CONTROLS = {
    f"bidi U+{ord(character):04X}": (character, "bidirectional controls")
    for character in "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
}
INVISIBLE = {
    f"format U+{ord(character):04X}": (character, "format characters")
    for character in "\u200b\u200c\u200d\u2060\ufeff\u00ad\u180e\U000e0001\U000e0041"
}
# Letters and marks that render as nothing: a name of them alone looks empty.
SHOW_AS_NOTHING = {
    f"blank U+{ord(character):04X}": (character, "show as nothing")
    for character in "\u3164\u115f\uffa0\u2800\u034f\ufe0f\U000e0100"
}
REFUSED_IN_ONE_LINE = LINE_BREAKERS | BIDI_CONTROLS | INVISIBLE | SHOW_AS_NOTHING
# Descriptions keep line breaks, tabs and zero-width joiners (emoji sequences), not the rest.
REFUSED_IN_PARAGRAPHS = {
    "line separator U+2028": ("\u2028", "line separators"),
    "paragraph separator U+2029": ("\u2029", "paragraph separators"),
    "next line U+0085": ("\x85", "control characters"),
} | BIDI_CONTROLS
PHISHING_NAME = "Your account is locked, confirm at http://evil.example/confirm"
# An RFC 2047 encoded-word: mail programs show it decoded wherever a header carries it.
ENCODED_WORD = "=?utf-8?b?" + base64.b64encode(b"Password expired - act now").decode() + "?="


def refusal_for(response: httpx2.Response, field: str) -> dict[str, Any]:
    """The 422 problem's error for `field` (PATCH's optional fields add a union-branch suffix)."""
    body = assert_problem(response, 422, "validation_error")
    matching = [error for error in body["errors"] if field in error["loc"]]
    assert matching, body["errors"]
    error: dict[str, Any] = matching[0]
    return error


def assert_refused_naming(response: httpx2.Response, field: str, what: str, hint: str) -> None:
    error = refusal_for(response, field)
    assert error["type"] == "refused_character", (hint, error)
    assert what in error["msg"], (hint, error)


@pytest.mark.parametrize(
    "place", ["start", "middle", "end"], ids=["at-start", "in-middle", "at-end"]
)
async def test_registration_refuses_each_character_class_in_a_full_name(
    shop: Shop, place: str
) -> None:
    for hint, (character, what) in REFUSED_IN_ONE_LINE.items():
        name = {
            "start": character + "Ada",
            "middle": "Ada" + character + "Lo",
            "end": "Ada" + character,
        }
        response = await shop.register(full_name=name[place])
        assert_refused_naming(response, "full_name", what, hint)
    admin = await shop.account(Role.ADMIN)
    listed = await shop.client.get(USERS, headers=admin.headers)
    assert listed.json()["total"] == 1, "only the admin exists: nothing refused was stored"


async def test_own_and_admin_profile_updates_refuse_each_character_class(shop: Shop) -> None:
    customer = await shop.account()
    admin = await shop.account(Role.ADMIN)
    for hint, (character, what) in REFUSED_IN_ONE_LINE.items():
        own = await shop.client.patch(
            ME, json={"full_name": f"Ada{character}"}, headers=customer.headers
        )
        assert_refused_naming(own, "full_name", what, hint)
        by_admin = await shop.client.patch(
            f"{USERS}/{customer.id}", json={"full_name": f"Ada{character}"}, headers=admin.headers
        )
        assert_refused_naming(by_admin, "full_name", what, hint)
    assert (await shop.me(customer.access_token)).json()["full_name"] == "Test"


async def test_product_names_refuse_each_class_and_descriptions_the_separators_and_bidi(
    shop: Shop,
) -> None:
    staff = await shop.account(Role.STAFF)
    product = await create_product(shop, staff.headers, name="Kettle", description="Boils.")
    body = {"price_cents": 1999, "stock": 1}
    for hint, (character, what) in REFUSED_IN_ONE_LINE.items():
        name = f"Kettle{character}"
        created = await shop.client.post(
            PRODUCTS, json={**body, "name": name}, headers=staff.headers
        )
        assert_refused_naming(created, "name", what, hint)
        patched = await shop.client.patch(
            f"{PRODUCTS}/{product['id']}", json={"name": name}, headers=staff.headers
        )
        assert_refused_naming(patched, "name", what, hint)
    for hint, (character, what) in REFUSED_IN_PARAGRAPHS.items():
        description = f"Boils\nwater{character}fast."
        created = await shop.client.post(
            PRODUCTS,
            json={**body, "name": "Kettle 2", "description": description},
            headers=staff.headers,
        )
        assert_refused_naming(created, "description", what, hint)
        patched = await shop.client.patch(
            f"{PRODUCTS}/{product['id']}", json={"description": description}, headers=staff.headers
        )
        assert_refused_naming(patched, "description", what, hint)
    listed = (await shop.client.get(PRODUCTS, headers=staff.headers)).json()["items"]
    assert [(item["name"], item["description"]) for item in listed] == [("Kettle", "Boils.")]


async def test_searches_refuse_the_separators_and_bidi_controls(shop: Shop) -> None:
    staff = await shop.account(Role.STAFF)
    for hint, (character, what) in REFUSED_IN_PARAGRAPHS.items():
        products = await shop.client.get(PRODUCTS, params={"q": f"ket{character}"})
        assert_refused_naming(products, "q", what, hint)
        users = await shop.client.get(
            USERS, params={"email": f"ada{character}"}, headers=staff.headers
        )
        assert_refused_naming(users, "email", what, hint)


async def test_what_stays_allowed_in_text(shop: Shop) -> None:
    """Accents, scripts written right to left, private use (Hong Kong names in HKSCS code points),
    emoji with joiners in descriptions, tabs."""
    staff = await shop.account(Role.STAFF)
    for name in ["José Ñúñez", "محمد علي", "李小龍", "Zoë 🙂", "陳\ue05e文", "Icon \U000f0000"]:
        response = await shop.register(full_name=name)
        assert response.status_code == 201, (name, response.text)
        assert response.json()["full_name"] == name
    product = await create_product(
        shop,
        staff.headers,
        name="Family mug 👪",
        description="Print:\t👨\u200d👩\u200d👧\r\nDishwasher safe.",
    )
    assert product["description"] == "Print:\t👨\u200d👩\u200d👧\r\nDishwasher safe."


# --- Addresses -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    ["josé@example.com", "用户@example.com", "ÄDA@example.com"],
    ids=["latin", "cjk", "upper-case-umlaut"],
)
async def test_an_address_not_ascii_before_the_at_sign_is_refused(shop: Shop, address: str) -> None:
    error = refusal_for(await shop.register(email=address), "email")
    assert "ASCII before the @" in error["msg"], error
    account = await shop.account()
    change = {"email": address, "current_password": PASSWORD}
    error = refusal_for(await shop.client.patch(ME, json=change, headers=account.headers), "email")
    assert "ASCII before the @" in error["msg"], error
    admin = await shop.account(Role.ADMIN)
    by_admin = await shop.client.patch(
        f"{USERS}/{account.id}", json={"email": address}, headers=admin.headers
    )
    assert "ASCII before the @" in refusal_for(by_admin, "email")["msg"]
    assert (await shop.me(account.access_token)).json()["email"] == account.email


@pytest.mark.parametrize(
    "address",
    [f"{ENCODED_WORD}@example.com", "=?utf-8?q?Hi?=@example.com", "a.=?x?q?y?=@example.com"],
    ids=["base64", "quoted-printable", "after-a-dot"],
)
async def test_an_address_with_an_encoded_word_is_refused(shop: Shop, address: str) -> None:
    error = refusal_for(await shop.register(email=address), "email")
    assert "=?" in error["msg"], error


async def test_an_address_stored_before_the_ascii_rule_still_logs_in(shop: Shop) -> None:
    """Nothing stored is lost: the rule is for new addresses, not for finding existing ones."""
    stored = UserCreate.model_construct(
        email="josé@example.com", password=PASSWORD, full_name="José"
    )
    async with shop.app.state.sessionmaker() as session:
        await register_user(session, shop.app.state.passwords, stored, role=Role.STAFF)
        await session.commit()
    response = await shop.log_in("JOSÉ@example.com")
    assert response.status_code == 200, response.text
    me = await shop.me(response.json()["access_token"])
    assert me.json()["email"] == "josé@example.com"


# --- What the e-mails say ------------------------------------------------------------------------


@pytest.fixture
async def mail_shop(make_shop: ShopFactory, smtp: SmtpServer) -> Shop:
    return await make_shop(**smtp.settings(), **FAST_JOBS)


async def mail_to(smtp: SmtpServer, address: str, count: int = 1) -> list[EmailMessage]:
    def arrived() -> list[EmailMessage]:
        return [message for message in smtp.inbox.messages if message["To"] == address]

    await wait_until(lambda: len(arrived()) >= count, f"{count} e-mail(s) to {address}")
    return arrived()


def every_text_of(message: EmailMessage) -> list[str]:
    """The decoded Subject, the raw header block, and both parts' decoded content."""
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert isinstance(plain, EmailMessage)
    assert isinstance(html, EmailMessage)
    raw_headers = message.as_string().split("\n\n", 1)[0]
    return [str(message["Subject"]), raw_headers, plain.get_content(), html.get_content()]


@pytest.mark.parametrize(
    "full_name",
    [PHISHING_NAME, ENCODED_WORD, f"Ada {ENCODED_WORD} Lovelace"],
    ids=["phishing-text", "encoded-word", "encoded-word-inside"],
)
async def test_no_email_carries_the_name_a_registrant_chose(
    mail_shop: Shop, smtp: SmtpServer, full_name: str
) -> None:
    staff = await mail_shop.account(Role.STAFF)
    product = await create_product(mail_shop, staff.headers, name="Kettle")
    address = new_email("victim")
    registered = await mail_shop.register(email=address, full_name=full_name)
    assert registered.status_code == 201, registered.text
    assert registered.json()["full_name"] == full_name  # the name is kept, only not mailed
    token = (await mail_shop.log_in(address)).json()["access_token"]
    placed = await order(mail_shop, bearer(token), [(product["id"], 1)])
    assert placed.status_code == 201, placed.text
    paid = await mail_shop.client.post(
        f"/api/v1/orders/{placed.json()['id']}/status",
        json={"status": "PAID"},
        headers=staff.headers,
    )
    assert paid.status_code == 200, paid.text

    messages = await mail_to(smtp, address, count=3)
    subjects = sorted(str(message["Subject"]) for message in messages)
    number = placed.json()["id"][:8].upper()
    assert subjects == sorted(
        [
            "Welcome to order-api",
            f"Your order {number} is confirmed",
            f"Your order {number} is now PAID",
        ]
    )
    decoded_word = "Password expired"
    for message in messages:
        for text in every_text_of(message):
            for user_text in [full_name, "evil.example", "locked", ENCODED_WORD, decoded_word]:
                assert user_text not in text, (message["Subject"], user_text, text)
        plain = message.get_body(preferencelist=("plain",))
        assert isinstance(plain, EmailMessage)
        assert plain.get_content().splitlines()[0] == "Hello,"
    confirmation = next(m for m in messages if "confirmed" in str(m["Subject"]))
    assert "Kettle" in every_text_of(confirmation)[2]  # product names are staff-chosen and stay


async def test_a_plus_tag_in_the_address_reaches_no_e_mail_body(
    mail_shop: Shop, smtp: SmtpServer
) -> None:
    """The part after `+` is the registrant's text in the victim's own inbox: To must carry it,
    nothing else may."""
    address = "victim+account-locked.confirm-at.evil.example/unlock@example.com"
    registered = await mail_shop.register(email=address)
    assert registered.status_code == 201, registered.text
    [message] = await mail_to(smtp, address)
    subject, _, plain, html = every_text_of(message)
    for text in (subject, plain, html):
        assert "evil.example" not in text
        assert "account-locked" not in text


async def test_an_internationalised_domain_registers_and_its_email_arrives(
    mail_shop: Shop, smtp: SmtpServer
) -> None:
    # A relay without SMTPUTF8 refuses the Unicode spelling; this one is told to do the same.
    smtp.inbox.rejected_recipients.add("anna@bücher.example.com")
    registered = await mail_shop.register(email="Anna@BÜCHER.example.com")
    assert registered.status_code == 201, registered.text
    assert registered.json()["email"] == "anna@bücher.example.com"  # stored as before
    [message] = await mail_to(smtp, "anna@xn--bcher-kva.example.com")
    assert "anna@xn--bcher-kva.example.com" in message.as_string().split("\n\n", 1)[0]
    again = await mail_shop.register(email="anna@xn--bcher-kva.example.com")
    assert_problem(again, 409, "email_taken")
