"""E-mails from Jinja2 templates, queued through the outbox with the change that causes them."""

from __future__ import annotations

import uuid
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, TemplateError, select_autoescape
from pydantic_core import to_jsonable_python
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.jobs import outbox
from order_api.jobs.delivery import PermanentJobError
from order_api.platform.fields import checked_email

EMAIL_KIND = "email"
TEMPLATES = ("welcome", "order_confirmation", "order_status_changed")

_environment = Environment(
    loader=PackageLoader("order_api.notifications", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)


def email_message(template: str, to: str, context: dict[str, Any]) -> outbox.NewMessage:
    """The outbox message of one e-mail, for `outbox.enqueue_all` with the change's others."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown e-mail template {template!r}")
    # JSON-safe now (UUIDs, decimals, datetimes), so the caller's commit never fails on it later.
    payload = {"template": template, "to": to, "context": to_jsonable_python(context)}
    return outbox.NewMessage(EMAIL_KIND, payload)


async def queue_email(
    session: AsyncSession, template: str, to: str, context: dict[str, Any]
) -> uuid.UUID:
    """Promise an e-mail in the caller's transaction; it is sent only if that commits."""
    message = email_message(template, to, context)
    return await outbox.enqueue(session, message.kind, message.payload)


def message_id_for(outbox_id: uuid.UUID, sender: str) -> str:
    """Stable per outbox row: a redelivered e-mail carries the same Message-ID as the first."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "order-api.invalid"
    return f"<{outbox_id}@{domain}>"


def smtp_address(address: str) -> str:
    """`address` as a relay without SMTPUTF8 takes it: an internationalised domain in its IDNA
    (xn--) spelling. Stored addresses are kept as they are; only what goes on the wire changes."""
    if address.isascii():
        return address
    ascii_email = checked_email(address).ascii_email
    if ascii_email is None:
        # Accepted before addresses had to be ASCII before the @; only SMTPUTF8 could carry it.
        raise ValueError("the part before the @-sign is not ASCII, which needs SMTPUTF8")
    return ascii_email


def render_email(
    outbox_id: uuid.UUID, payload: dict[str, Any], sender: str, sent_at: Any
) -> EmailMessage:
    template, to, context = payload["template"], payload["to"], payload["context"]
    try:
        recipient = Address(addr_spec=smtp_address(to))
        subject = _environment.get_template(f"{template}.subject.txt").render(context).strip()
        text = _environment.get_template(f"{template}.txt").render(context)
        html = _environment.get_template(f"{template}.html").render(context)
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = sender
        message["To"] = recipient
        message["Date"] = format_datetime(sent_at)
        message["Message-ID"] = message_id_for(outbox_id, sender)
        message.set_content(text)
        message.add_alternative(html, subtype="html")
    except (TemplateError, ValueError, IndexError) as error:
        raise PermanentJobError(f"cannot render {template!r} for {to!r}: {error}") from error
    return message
