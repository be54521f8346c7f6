"""Every e-mail template renders to a text and an HTML part; the retry delay grows and is capped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from order_api.jobs.delivery import PermanentJobError
from order_api.jobs.outbox import RetryPolicy
from order_api.notifications.emails import TEMPLATES, render_email

CONTEXTS: dict[str, dict[str, Any]] = {
    "welcome": {},
    "order_confirmation": {
        "order_number": "A-1001",
        "lines": [{"quantity": 2, "name": "Tea <green>", "total": "€9.80"}],
        "total": "€9.80",
    },
    "order_status_changed": {
        "order_number": "A-1001",
        "previous_status": "PENDING",
        "status": "PAID",
    },
}


@pytest.mark.parametrize("template", TEMPLATES)
def test_template_renders_both_parts(template: str) -> None:
    payload = {"template": template, "to": "ada@example.com", "context": CONTEXTS[template]}
    message = render_email(uuid.uuid4(), payload, "Shop <shop@example.com>", datetime.now(UTC))
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert html is not None
    assert text.get_content().startswith("Hello,\n")
    assert "<p>Hello,</p>" in html.get_content()
    assert message["Message-ID"].endswith("@example.com>")
    if template == "order_confirmation":
        assert "Tea &lt;green&gt;" in html.get_content()


# What an outbox row queued before e-mails stopped naming the customer still holds.
QUEUED_WITH_A_NAME = "Your account is locked, see http://evil.example =?utf-8?q?Act_now?="


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_name_left_in_a_queued_context_appears_nowhere(template: str) -> None:
    context = {**CONTEXTS[template], "full_name": QUEUED_WITH_A_NAME}
    payload = {"template": template, "to": "ada@example.com", "context": context}
    message = render_email(uuid.uuid4(), payload, "Shop <shop@example.com>", datetime.now(UTC))
    for part in [message.as_string(), *(p.get_content() for p in message.iter_parts())]:
        for fragment in ["locked", "evil.example", "=?utf-8?q?Act_now?=", "Act now"]:
            assert fragment not in part, (template, fragment)


def test_an_internationalised_domain_is_addressed_in_its_idna_spelling() -> None:
    to = "anna@bücher.example.com"
    payload: dict[str, Any] = {"template": "welcome", "to": to, "context": {}}
    message = render_email(uuid.uuid4(), payload, "Shop <shop@example.com>", datetime.now(UTC))
    assert "To: anna@xn--bcher-kva.example.com\n" in message.as_string()
    assert "bücher" not in message.as_string()


def test_a_stored_address_not_ascii_before_the_at_sign_fails_saying_why() -> None:
    to = "josé@example.com"
    payload: dict[str, Any] = {"template": "welcome", "to": to, "context": {}}
    with pytest.raises(PermanentJobError, match="SMTPUTF8"):
        render_email(uuid.uuid4(), payload, "Shop <shop@example.com>", datetime.now(UTC))


def test_retry_delay_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=10, base_seconds=2, max_seconds=60)
    for attempts, ceiling in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (9, 60)]:
        for _ in range(20):
            delay = policy.delay(attempts)
            assert timedelta(seconds=ceiling / 2) <= delay <= timedelta(seconds=ceiling)
