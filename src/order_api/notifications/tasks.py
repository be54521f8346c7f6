"""The outbox handler for e-mails: render in the worker, then hand to the mailer."""

from __future__ import annotations

from order_api.config import Settings
from order_api.jobs.delivery import Completion
from order_api.jobs.outbox import ClaimedMessage, utc_now
from order_api.notifications.emails import render_email
from order_api.notifications.mailer import Mailer, create_mailer


class EmailDelivery:
    def __init__(self, mailer: Mailer, sender: str) -> None:
        self.mailer = mailer
        self.sender = sender

    @classmethod
    def from_settings(cls, settings: Settings) -> EmailDelivery:
        return cls(create_mailer(settings), settings.mail_from)

    async def __call__(self, message: ClaimedMessage, completion: Completion) -> None:
        email = render_email(message.id, message.payload, self.sender, utc_now())
        await self.mailer.send(email, str(message.id), completion)
