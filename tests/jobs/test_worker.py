"""The production job path: PostgreSQL, a Redis stream, real `order-api worker` processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from order_api.jobs.models import OutboxMessage, OutboxStatus
from tests.jobs.conftest import FAST_JOBS, outbox_row, queue_and_commit
from tests.redis_server import own_redis
from tests.smtp_server import SmtpServer
from tests.support import TEST_SECRET_KEY, AppBuilder
from tests.waiting import wait_until

ORDER_API = str(Path(sys.executable).parent / "order-api")
LEASE_SECONDS = 2.0

pytestmark = pytest.mark.only_backend("postgresql")


class Workers:
    """Starts `order-api worker` processes with the test's settings and reaps them afterwards."""

    def __init__(self, env: dict[str, str], directory: Path) -> None:
        self.env = env
        self.directory = directory
        self.processes: list[subprocess.Popen[str]] = []

    def start(self) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [ORDER_API, "worker", "--concurrency", "4"],
            cwd=self.directory,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=30)


@pytest.fixture
def job_settings(redis_url: str, redis_prefix: str, smtp: SmtpServer) -> dict[str, object]:
    return {
        **smtp.settings(),
        **FAST_JOBS,
        "redis_url": redis_url,
        "redis_prefix": redis_prefix,
        "job_lease_seconds": LEASE_SECONDS,
    }


@pytest.fixture
def workers(
    job_settings: dict[str, object], database_url: str, tmp_path: Path
) -> Iterator[Workers]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "JOB_", "REDIS_"))}
    env.update({name.upper(): str(value) for name, value in job_settings.items()})
    env.update(
        {
            "DATABASE_URL": database_url,
            "SECRET_KEY": TEST_SECRET_KEY,
            "ENVIRONMENT": "test",
            "LOG_FORMAT": "json",
            "DATA_DIR": str(tmp_path / "worker-data"),
        }
    )
    pool = Workers(env, tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture
async def api(make_app: AppBuilder, job_settings: dict[str, object]) -> FastAPI:
    """An API process's view: it writes the outbox and relays to Redis; it never runs jobs."""
    return await make_app(**job_settings)


async def wait_for_status(app: FastAPI, message_id: object, status: OutboxStatus) -> None:
    async def reached() -> bool:
        row = await outbox_row(app, message_id)  # type: ignore[arg-type]
        return row is not None and row.status == status

    await wait_until(reached, f"outbox row to become {status}")


async def test_a_worker_delivers_a_committed_email_once(
    api: FastAPI, workers: Workers, smtp: SmtpServer
) -> None:
    workers.start()
    message_id = await queue_and_commit(api)
    await wait_for_status(api, message_id, OutboxStatus.DONE)
    await api.state.background.relay.relay_due()
    assert smtp.inbox.count() == 1
    assert smtp.inbox.messages[0]["Message-ID"] == f"<{message_id}@localhost>"


async def test_a_worker_killed_mid_job_still_yields_exactly_one_email(
    api: FastAPI, workers: Workers, smtp: SmtpServer
) -> None:
    smtp.inbox.recipient_delay_seconds = 3.0
    doomed = workers.start()
    message_id = await queue_and_commit(api)
    await wait_until(smtp.inbox.conversations_started.is_set, "the worker to start SMTP")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    smtp.inbox.recipient_delay_seconds = 0.0
    workers.start()
    await wait_for_status(api, message_id, OutboxStatus.DONE)
    # Let stale deliveries show up: past another lease, with a new message waking the stream.
    await asyncio.sleep(LEASE_SECONDS * 1.5)
    second_id = await queue_and_commit(api, to="grace@example.com")
    await wait_for_status(api, second_id, OutboxStatus.DONE)
    await api.state.background.relay.relay_due()
    recipients = [message["To"] for message in smtp.inbox.messages]
    assert sorted(recipients) == ["ada@example.com", "grace@example.com"]


async def test_a_worker_killed_after_the_server_accepted_sends_no_second_email(
    api: FastAPI, workers: Workers, smtp: SmtpServer
) -> None:
    smtp.inbox.hold_quit = True  # the worker dies between the server's 250 and its 221 to QUIT
    doomed = workers.start()
    message_id = await queue_and_commit(api)
    await wait_until(smtp.inbox.quit_received.is_set, "the worker to say QUIT")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    smtp.inbox.quit_released.set()
    workers.start()
    # Past the dead worker's lease, with a new message waking the stream: a resend shows up now.
    await asyncio.sleep(LEASE_SECONDS * 1.5)
    second_id = await queue_and_commit(api, to="grace@example.com")
    await wait_for_status(api, second_id, OutboxStatus.DONE)
    await api.state.background.relay.relay_due()
    row = await outbox_row(api, message_id)
    assert row is not None
    assert (row.status, row.attempts) == (OutboxStatus.DONE, 1)
    recipients = [message["To"] for message in smtp.inbox.messages]
    assert sorted(recipients) == ["ada@example.com", "grace@example.com"]


async def sigterm_during_smtp(
    api: FastAPI, workers: Workers, smtp: SmtpServer
) -> tuple[str, OutboxMessage]:
    """A worker gets SIGTERM while its job talks SMTP: its log, and the job's row after it exits
    (with code 0)."""
    worker = workers.start()
    message_id = await queue_and_commit(api)
    await wait_until(smtp.inbox.conversations_started.is_set, "the worker to start SMTP")
    worker.send_signal(signal.SIGTERM)
    _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    row = await outbox_row(api, message_id)
    assert row is not None
    return stderr, row


async def test_sigterm_lets_the_running_job_finish(
    api: FastAPI, workers: Workers, smtp: SmtpServer
) -> None:
    smtp.inbox.recipient_delay_seconds = 0.8  # inside the job time limit, half a lease
    stderr, row = await sigterm_during_smtp(api, workers, smtp)
    assert "worker_stopped" in stderr
    assert row.status == OutboxStatus.DONE
    assert smtp.inbox.count() == 1


async def test_sigterm_hands_back_a_job_that_outlives_the_grace(
    make_app: AppBuilder, job_settings: dict[str, object], workers: Workers, smtp: SmtpServer
) -> None:
    # A 30 s SMTP answer: past the worker's 0.3 s grace, inside the job's 2 s bound (half a lease).
    settings = {**job_settings, "job_lease_seconds": 4.0}
    workers.env.update({"JOB_LEASE_SECONDS": "4.0", "SHUTDOWN_TIMEOUT_SECONDS": "0.3"})
    api = await make_app(**settings)
    smtp.inbox.recipient_delay_seconds = 30
    stderr, row = await sigterm_during_smtp(api, workers, smtp)
    assert "job_released" in stderr
    # Handed back, its attempt not counted: pending, or already relayed again by the API.
    assert row.status in {OutboxStatus.PENDING, OutboxStatus.DISPATCHED}
    assert row.attempts == 0

    smtp.inbox.recipient_delay_seconds = 0
    workers.start()
    await api.state.background.relay.relay_due()
    await wait_for_status(api, row.id, OutboxStatus.DONE)
    assert smtp.inbox.count() == 1


async def test_a_worker_waits_out_a_redis_restart_and_takes_jobs_again(
    make_app: AppBuilder, job_settings: dict[str, object], workers: Workers, smtp: SmtpServer
) -> None:
    with own_redis() as queue:
        await queue.start_and_wait()
        workers.env["REDIS_URL"] = queue.url
        api = await make_app(**{**job_settings, "redis_url": queue.url})
        worker = workers.start()
        before = await queue_and_commit(api)
        await wait_for_status(api, before, OutboxStatus.DONE)

        queue.stop()
        await asyncio.sleep(2)  # the worker finds Redis gone, and waits
        await queue.start_and_wait()  # empty: the stream and its consumer group are lost
        after = await queue_and_commit(api, to="grace@example.com")
        await api.state.background.relay.relay_due()
        await wait_for_status(api, after, OutboxStatus.DONE)

        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    # Lost once and waited for with a growing delay, not retried in a tight loop.
    assert events.count("job_queue_lost") == 1
    assert events.count("job_queue_back") == 1
    # taskiq saw no error, and its note that the stop cancelled the receiver is no warning.
    assert not [
        line for line in lines if line["logger"].startswith("taskiq") and line["level"] != "info"
    ]
    assert sorted(message["To"] for message in smtp.inbox.messages) == [
        "ada@example.com",
        "grace@example.com",
    ]
