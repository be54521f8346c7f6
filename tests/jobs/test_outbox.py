"""The outbox end to end in one process: commit, relay, job, SMTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from decimal import Decimal

from fastapi import FastAPI
from prometheus_client import REGISTRY
from sqlalchemy import func, select, update

from order_api.jobs import outbox
from order_api.jobs.delivery import JobRuntime, deliver
from order_api.jobs.models import OutboxMessage, OutboxStatus
from order_api.jobs.relay import OutboxRelay
from order_api.notifications.emails import queue_email
from tests.jobs.conftest import (
    FAST_JOBS,
    WELCOME,
    outbox_row,
    queue_and_commit,
    queue_without_waking_the_relay,
)
from tests.smtp_server import SmtpServer
from tests.support import AppBuilder
from tests.waiting import wait_until


async def status_of(app: FastAPI, message_id: uuid.UUID) -> OutboxStatus | None:
    row = await outbox_row(app, message_id)
    return row.status if row else None


async def settled(app: FastAPI, message_id: uuid.UUID, status: OutboxStatus) -> OutboxMessage:
    async def reached() -> bool:
        return await status_of(app, message_id) == status

    await wait_until(reached, f"outbox row {message_id} to become {status}")
    row = await outbox_row(app, message_id)
    assert row is not None
    return row


async def relay_passes(app: FastAPI, count: int = 3) -> None:
    """Let the relay look at the outbox a few more times (anything left would be sent again)."""
    for _ in range(count):
        await app.state.background.relay.relay_due()
        await app.state.background.broker.wait_all()


async def test_committed_change_sends_exactly_one_email(
    mail_app: FastAPI, smtp: SmtpServer
) -> None:
    message_id = await queue_and_commit(mail_app)
    row = await settled(mail_app, message_id, OutboxStatus.DONE)
    await relay_passes(mail_app)
    assert smtp.inbox.count() == 1
    [message] = smtp.inbox.messages
    assert message["Message-ID"] == f"<{message_id}@localhost>"
    assert message["To"] == "ada@example.com"
    assert message["From"] == "order-api <no-reply@localhost>"
    assert message["Subject"] == "Welcome to order-api"
    assert {part.get_content_type() for part in message.walk()} >= {"text/plain", "text/html"}
    assert row.attempts == 1
    assert row.completed_at is not None


async def test_rolled_back_change_sends_nothing(mail_app: FastAPI, smtp: SmtpServer) -> None:
    async with mail_app.state.sessionmaker() as session:
        await queue_email(session, "welcome", "ada@example.com", WELCOME)
        await session.flush()
        await session.rollback()
    await relay_passes(mail_app)
    async with mail_app.state.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 0
    assert smtp.inbox.count() == 0


async def test_temporary_smtp_failures_are_retried_until_delivered(
    mail_app: FastAPI, smtp: SmtpServer
) -> None:
    smtp.inbox.temporary_failures = 2
    message_id = await queue_and_commit(mail_app)
    row = await settled(mail_app, message_id, OutboxStatus.DONE)
    await relay_passes(mail_app)
    assert smtp.inbox.count() == 1
    assert row.attempts == 3
    assert row.last_error is not None
    assert "451" in row.last_error


def failed_jobs(kind: str) -> float:
    value = REGISTRY.get_sample_value("order_api_jobs_total", {"kind": kind, "outcome": "failed"})
    return value or 0.0


async def test_a_job_that_exhausts_its_attempts_is_recorded_as_failed(
    make_app: AppBuilder, smtp: SmtpServer
) -> None:
    app = await make_app(**smtp.settings(), **FAST_JOBS, job_max_attempts=3)
    smtp.inbox.temporary_failures = 1000
    failures_before = failed_jobs("email")
    message_id = await queue_and_commit(app)
    row = await settled(app, message_id, OutboxStatus.FAILED)
    assert row.attempts == 3
    assert row.last_error is not None
    assert "451" in row.last_error
    assert failed_jobs("email") == failures_before + 1
    assert smtp.inbox.count() == 0


async def test_permanent_rejection_fails_at_once_and_retry_failed_requeues(
    mail_app: FastAPI, smtp: SmtpServer
) -> None:
    smtp.inbox.rejected_recipients.add("gone@example.com")
    message_id = await queue_and_commit(mail_app, to="gone@example.com")
    row = await settled(mail_app, message_id, OutboxStatus.FAILED)
    assert row.attempts == 1
    assert row.last_error is not None
    assert "550" in row.last_error

    smtp.inbox.rejected_recipients.clear()
    async with mail_app.state.sessionmaker() as session:
        assert await outbox.retry_failed(session) == 1
        await session.commit()
    await settled(mail_app, message_id, OutboxStatus.DONE)
    assert smtp.inbox.count() == 1


async def test_template_error_is_permanent(mail_app: FastAPI, smtp: SmtpServer) -> None:
    message_id = await queue_and_commit(mail_app, template="order_confirmation", total="€1.00")
    row = await settled(mail_app, message_id, OutboxStatus.FAILED)
    assert row.attempts == 1
    assert row.last_error is not None
    assert "cannot render 'order_confirmation'" in row.last_error
    assert "'order_number' is undefined" in row.last_error
    assert smtp.inbox.count() == 0


async def test_malformed_recipient_is_permanent(mail_app: FastAPI, smtp: SmtpServer) -> None:
    message_id = await queue_and_commit(mail_app, to="not an address")
    row = await settled(mail_app, message_id, OutboxStatus.FAILED)
    assert row.attempts == 1
    assert smtp.inbox.count() == 0


async def test_html_part_escapes_what_users_typed(mail_app: FastAPI, smtp: SmtpServer) -> None:
    line = {"quantity": 1, "name": "<script>alert(1)</script>", "total": "€1.00"}
    await queue_and_commit(
        mail_app, template="order_confirmation", order_number="A-1", lines=[line], total="€1.00"
    )
    await wait_until(lambda: smtp.inbox.count() == 1, "the e-mail")
    [message] = smtp.inbox.messages
    html = message.get_body(preferencelist=("html",))
    text = message.get_body(preferencelist=("plain",))
    assert html is not None
    assert text is not None
    assert "&lt;script&gt;" in html.get_content()
    assert "<script>" not in html.get_content()
    assert "<script>alert(1)</script>" in text.get_content()


async def test_a_job_delivered_twice_at_once_has_its_effect_once(
    mail_app: FastAPI, smtp: SmtpServer
) -> None:
    message_id = await queue_without_waking_the_relay(mail_app)
    runtime: JobRuntime = mail_app.state.background.broker.state.runtime
    outcomes = await asyncio.gather(deliver(runtime, message_id), deliver(runtime, message_id))
    assert sorted(outcomes, key=str) == sorted([OutboxStatus.DONE, None], key=str)
    assert smtp.inbox.count() == 1


async def test_a_row_whose_job_died_is_relayed_again_after_its_lease(
    make_app: AppBuilder, smtp: SmtpServer
) -> None:
    app = await make_app(**smtp.settings(), **FAST_JOBS, job_lease_seconds=0.3)
    message_id = await queue_without_waking_the_relay(app)
    async with app.state.sessionmaker() as session:
        # A job took the row and died before finishing: nothing but the lease remains.
        assert await outbox.start_processing(session, message_id, timedelta(seconds=0.3))
        await session.commit()
    row = await settled(app, message_id, OutboxStatus.DONE)
    assert row.attempts == 2
    assert smtp.inbox.count() == 1


async def test_two_relays_never_hand_off_the_same_row(mail_app: FastAPI) -> None:
    async with mail_app.state.sessionmaker() as session:
        for number in range(30):
            await outbox.enqueue(session, "probe", {"number": number})
        session.info.pop(outbox.OUTBOX_WRITTEN)
        await session.commit()
    handed: list[list[uuid.UUID]] = [[], []]

    def recorder(into: list[uuid.UUID]) -> OutboxRelay:
        async def kick(message_id: uuid.UUID) -> None:
            into.append(message_id)
            await asyncio.sleep(0)

        return OutboxRelay(mail_app.state.sessionmaker, kick, poll_seconds=1, lease_seconds=60)

    first, second = recorder(handed[0]), recorder(handed[1])
    await asyncio.gather(first.relay_due(), second.relay_due(), first.relay_due())
    assert len(handed[0]) + len(handed[1]) == 30
    assert set(handed[0]).isdisjoint(handed[1])
    async with mail_app.state.sessionmaker() as session:
        statuses = set((await session.scalars(select(OutboxMessage.status))).all())
    assert statuses == {OutboxStatus.DISPATCHED}


async def test_a_stale_delivery_does_not_jump_a_retrys_backoff(
    mail_app: FastAPI, smtp: SmtpServer
) -> None:
    async with mail_app.state.sessionmaker() as session:
        message_id = await queue_email(session, "welcome", "ada@example.com", WELCOME)
        session.info.pop(outbox.OUTBOX_WRITTEN)
        await session.flush()
        later = outbox.utc_now() + timedelta(hours=1)
        await session.execute(
            update(OutboxMessage).values(available_at=later, attempts=1, lease_token=None)
        )
        await session.commit()
    runtime: JobRuntime = mail_app.state.background.broker.state.runtime
    assert await deliver(runtime, message_id) is None
    assert smtp.inbox.count() == 0
    assert await status_of(mail_app, message_id) == OutboxStatus.PENDING


async def test_a_job_slower_than_its_lease_is_cut_off_not_duplicated(
    make_app: AppBuilder, smtp: SmtpServer
) -> None:
    app = await make_app(**smtp.settings(), **FAST_JOBS, job_lease_seconds=0.6, job_max_attempts=2)
    smtp.inbox.recipient_delay_seconds = 1.0
    message_id = await queue_and_commit(app)
    row = await settled(app, message_id, OutboxStatus.FAILED)
    assert row.attempts >= 2
    assert row.last_error is not None
    assert row.last_error.startswith(("TimeoutError", "PermanentJobError: attempts exhausted"))
    assert smtp.inbox.count() == 0


async def test_times_come_back_timezone_aware_utc(mail_app: FastAPI) -> None:
    message_id = await queue_and_commit(mail_app)
    row = await settled(mail_app, message_id, OutboxStatus.DONE)
    assert row.completed_at is not None
    assert row.completed_at.utcoffset() == timedelta(0)
    assert row.created_at.utcoffset() == timedelta(0)


async def test_context_values_are_stored_as_json(mail_app: FastAPI, smtp: SmtpServer) -> None:
    order_id = uuid.uuid4()
    message_id = await queue_and_commit(
        mail_app, full_name="Ada", email="ada@example.com", order_id=order_id, total=Decimal("9.90")
    )
    row = await settled(mail_app, message_id, OutboxStatus.DONE)
    assert row.payload["context"]["order_id"] == str(order_id)
    assert smtp.inbox.count() == 1


async def test_a_header_injection_attempt_fails_at_once(
    mail_app: FastAPI, smtp: SmtpServer
) -> None:
    message_id = await queue_and_commit(mail_app, to="ada@example.com\r\nBcc: victim@example.com")
    row = await settled(mail_app, message_id, OutboxStatus.FAILED)
    assert row.attempts == 1
    assert smtp.inbox.count() == 0
