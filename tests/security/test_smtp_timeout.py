"""API10:2023 (unsafe consumption of APIs) and SPEC §5 decision 11: SMTP is the one outside API
the service calls, and every call to it is bounded by SMTP_TIMEOUT_SECONDS. A relay that stops
answering costs a retry, not a job held until its lease runs out nor a lost e-mail.

The job runner also cuts a job off at half its lease (a plain `TimeoutError`); the check on the
error's name tells the SMTP client's own timeout from that backstop.
"""

from __future__ import annotations

import re

from fastapi import FastAPI

from order_api.jobs.models import OutboxStatus
from tests.jobs.conftest import FAST_JOBS, outbox_row, queue_and_commit
from tests.smtp_server import SmtpServer
from tests.support import AppBuilder
from tests.waiting import wait_until

# Longer than the job's own cut-off (half the 60 s lease), so only the SMTP timeout ends it first.
HUNG_SECONDS = 45.0


async def test_a_hung_smtp_relay_times_out_is_retried_and_delivers_once(
    make_app: AppBuilder, smtp: SmtpServer
) -> None:
    app: FastAPI = await make_app(
        **smtp.settings(), **FAST_JOBS, smtp_timeout_seconds=0.2, job_max_attempts=100
    )
    smtp.inbox.recipient_delay_seconds = HUNG_SECONDS
    message_id = await queue_and_commit(app)

    async def timed_out_twice() -> bool:
        row = await outbox_row(app, message_id)
        return row is not None and row.attempts >= 2 and row.last_error is not None

    await wait_until(timed_out_twice, "two attempts against the hung relay")
    row = await outbox_row(app, message_id)
    assert row is not None
    assert row.last_error is not None
    # aiosmtplib's SMTPTimeoutError or one of its subclasses (read, connect), not the backstop.
    assert re.match(r"SMTP\w*TimeoutError: ", row.last_error), row.last_error
    assert row.status is not OutboxStatus.FAILED  # a timeout is worth a retry, not a failure

    smtp.inbox.recipient_delay_seconds = 0.0

    async def delivered() -> bool:
        done = await outbox_row(app, message_id)
        return done is not None and done.status is OutboxStatus.DONE

    await wait_until(delivered, "the e-mail once the relay answers again")
    assert smtp.inbox.count() == 1
