"""A mail catcher for `order-api stack`: real SMTP in, one `.eml` file per accepted message out.

aiosmtpd is a development dependency: the stack runs from a checkout (`make stack`), never from
the runtime image, which keeps only what the API and the worker need.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import itertools
import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from order_api.notifications.mailer import write_message_file

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session

logger = structlog.get_logger("order_api.ops.mail_catcher")


class MailCatcherUnavailable(Exception):
    """aiosmtpd is not installed (a runtime-only install), or the SMTP port is taken."""


class CatchingHandler:
    """aiosmtpd handler: every message it accepts is a file, named in arrival order."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.sequence = itertools.count(1)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        if not isinstance(content, bytes):
            return "554 5.6.0 Expected the message as bytes"
        name = f"{time.time_ns():020d}-{next(self.sequence):06d}"
        path = await asyncio.to_thread(write_message_file, self.directory, content, name)
        headers = email.message_from_bytes(content, policy=email.policy.default)
        logger.info("mail_caught", to=headers["To"], subject=headers["Subject"], file=path.name)
        return "250 Message accepted for delivery"


async def start_mail_catcher(host: str, port: int, directory: Path) -> asyncio.Server:
    """An SMTP server on this event loop; close it to stop catching."""
    try:
        from aiosmtpd.smtp import SMTP  # optional: a development dependency
    except ImportError as error:
        raise MailCatcherUnavailable(
            "the mail catcher needs aiosmtpd (a development dependency: run `make stack` "
            "from a checkout, or pass --no-mail-catcher and set SMTP_HOST)"
        ) from error
    handler = CatchingHandler(directory)
    loop = asyncio.get_running_loop()
    try:
        return await loop.create_server(
            lambda: SMTP(handler, hostname="order-api-stack"), host, port
        )
    except OSError as error:
        raise MailCatcherUnavailable(
            f"the mail catcher cannot listen on {host}:{port}: {error}"
        ) from error
