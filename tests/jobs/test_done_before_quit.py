"""An e-mail's row is recorded `done` the moment the SMTP server accepted the message, before the
client's QUIT: a crash during QUIT or the close cannot make the outbox send it again."""

from __future__ import annotations

from fastapi import FastAPI

from order_api.jobs.models import OutboxStatus
from tests.jobs.conftest import outbox_row, queue_and_commit
from tests.smtp_server import SmtpServer
from tests.waiting import wait_until


async def test_the_row_is_done_when_the_server_receives_quit(
    mail_app: FastAPI, smtp: SmtpServer
) -> None:
    smtp.inbox.hold_quit = True
    message_id = await queue_and_commit(mail_app)
    await wait_until(smtp.inbox.quit_received.is_set, "the mailer to say QUIT")
    try:
        row = await outbox_row(mail_app, message_id)
    finally:
        smtp.inbox.quit_released.set()
    assert smtp.inbox.count() == 1
    assert row is not None
    assert row.status == OutboxStatus.DONE
