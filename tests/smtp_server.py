"""A real SMTP server (aiosmtpd) on a free port whose answers the tests can script."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Inbox:
    """Accepts mail unless told otherwise; records only what it answered 250 to."""

    messages: list[EmailMessage] = field(default_factory=list)
    temporary_failures: int = 0
    rejected_recipients: set[str] = field(default_factory=set)
    recipient_delay_seconds: float = 0.0
    conversations_started: threading.Event = field(default_factory=threading.Event)
    # While `hold_quit` is set, a QUIT waits for `quit_released` before its 221 answer: a test
    # looks at the world between the server's 250 to DATA and the client's end of the session.
    hold_quit: bool = False
    quit_received: threading.Event = field(default_factory=threading.Event)
    quit_released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        self.conversations_started.set()
        if self.recipient_delay_seconds:
            await asyncio.sleep(self.recipient_delay_seconds)
        if address in self.rejected_recipients:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            if self.temporary_failures > 0:
                self.temporary_failures -= 1
                return "451 4.3.0 Try again later"
            content = envelope.content
            assert isinstance(content, bytes)
            parsed = email.message_from_bytes(content, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            self.messages.append(parsed)
        return "250 Message accepted for delivery"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.quit_received.set()
        if self.hold_quit:
            await asyncio.to_thread(self.quit_released.wait)
        return "221 Bye"

    def count(self) -> int:
        with self.lock:
            return len(self.messages)


class SmtpServer:
    def __init__(self) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.inbox.quit_released.set()  # a held QUIT must not keep the server's loop from ending
        self.controller.stop()

    def settings(self) -> dict[str, Any]:
        return {"smtp_host": "127.0.0.1", "smtp_port": self.port, "smtp_tls": "none"}
