"""E-mails the embedded mailer wrote as .eml files, read back as messages."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path


def written(directory: Path) -> list[EmailMessage]:
    """Every message written to `directory`, in file-name order."""
    messages = []
    for path in sorted(directory.glob("*.eml")) if directory.exists() else []:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        messages.append(message)
    return messages


def delivered(directory: Path, address: str, subject_part: str) -> list[EmailMessage]:
    """Messages to `address` whose subject contains `subject_part`, in file-name order."""
    return [
        message
        for message in written(directory)
        if message["To"] == address and subject_part in message["Subject"]
    ]


def plain_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    text: str = part.get_content()
    return text
