"""Where e-mails go: an SMTP relay in production, `.eml` files under DATA_DIR/mail otherwise."""

from __future__ import annotations

import asyncio
import os
import tempfile
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import aiosmtplib

from order_api.config import Settings
from order_api.jobs.delivery import Completion, PermanentJobError


class Mailer(Protocol):
    async def send(self, message: EmailMessage, name: str, completion: Completion) -> None:
        """Deliver `message`; `name` is stable per outbox row: a redelivery replaces, not adds.
        `completion.prepare()` comes just before the step that makes the delivery final,
        `completion.record()` right after it, before any clean-up."""


class SmtpMailer:
    def __init__(self, settings: Settings) -> None:
        assert settings.smtp_host is not None
        self.settings = settings

    async def send(self, message: EmailMessage, name: str, completion: Completion) -> None:
        settings = self.settings
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        client = aiosmtplib.SMTP(
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=password,
            use_tls=settings.smtp_tls == "tls",
            start_tls=settings.smtp_tls == "starttls",
            timeout=settings.smtp_timeout_seconds,
        )
        try:
            async with client:  # connect, EHLO, STARTTLS, AUTH; QUIT on the way out
                await completion.prepare()
                # Returns on the server's 250 to DATA: it has taken the message on (RFC 5321
                # §6.1), so the row is marked then, before QUIT and the close.
                await client.send_message(message)
                await completion.record()
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [refused.code for refused in error.recipients]
            if all(is_permanent(code) for code in codes):
                raise PermanentJobError(f"SMTP refused every recipient: {error}") from error
            raise
        except aiosmtplib.SMTPResponseException as error:
            if is_permanent(error.code):
                raise PermanentJobError(f"SMTP {error.code}: {error.message}") from error
            raise


def is_permanent(smtp_code: int) -> bool:
    """5xx is the server's final word (unknown user, rejected content); 4xx is worth a retry."""
    return 500 <= smtp_code < 600


class FileMailer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def send(self, message: EmailMessage, name: str, completion: Completion) -> None:
        content = message.as_bytes()
        await completion.prepare()
        await asyncio.to_thread(write_message_file, self.directory, content, name)
        await completion.record()


def write_message_file(directory: Path, content: bytes, name: str) -> Path:
    """`directory/name.eml`, written then renamed: a reader never sees half a message."""
    directory.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(handle, "wb") as file:
        file.write(content)
    # A rerun with the same name replaces the message whole.
    return Path(temporary).replace(directory / f"{name}.eml")


def create_mailer(settings: Settings) -> Mailer:
    if settings.smtp_host:
        return SmtpMailer(settings)
    return FileMailer(settings.data_dir / "mail")
