"""Every e-mail template renders to a text and an HTML part; the retry delay grows and is capped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from order_api.jobs.outbox import RetryPolicy
from order_api.notifications.emails import TEMPLATES, render_email

CONTEXTS = {
    "welcome": {"full_name": "Ada", "email": "ada@example.com"},
    "order_confirmation": {
        "full_name": "Ada",
        "order_number": "A-1001",
        "lines": [{"quantity": 2, "name": "Tea <green>", "total": "€9.80"}],
        "total": "€9.80",
    },
    "order_status_changed": {
        "full_name": "Ada",
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
    assert "Ada" in text.get_content()
    assert "Ada" in html.get_content()
    assert message["Message-ID"].endswith("@example.com>")
    if template == "order_confirmation":
        assert "Tea &lt;green&gt;" in html.get_content()


def test_retry_delay_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=10, base_seconds=2, max_seconds=60)
    for attempts, ceiling in [(1, 2), (2, 4), (3, 8), (4, 16), (5, 32), (6, 60), (9, 60)]:
        for _ in range(20):
            delay = policy.delay(attempts)
            assert timedelta(seconds=ceiling / 2) <= delay <= timedelta(seconds=ceiling)
