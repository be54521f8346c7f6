"""One delivery of an outbox row: claim it, run its handler, record the outcome before the ack."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from order_api.config import Settings
from order_api.jobs import outbox
from order_api.jobs.models import OutboxStatus
from order_api.platform.db import Sessions
from order_api.platform.telemetry import JOBS

logger = structlog.get_logger(__name__)


class Completion:
    """The row's `done` mark, which a handler whose effect cannot be undone (an e-mail the SMTP
    server answered 250 to) records itself, the moment the effect is final and before its
    clean-up (QUIT). A crash between effect and mark repeats the effect after the lease, so the
    mark is one autocommit UPDATE on a connection checked out in `prepare`: only that statement's
    way to the database lies between them. A handler that records nothing is marked after it
    returns."""

    def __init__(self, sessionmaker: Sessions, message: outbox.ClaimedMessage) -> None:
        self._sessionmaker = sessionmaker
        self._message = message
        self._session: AsyncSession | None = None
        self._open = contextlib.AsyncExitStack()
        # Set as the mark starts: from then on the effect happened, whatever the mark's fate.
        self.started = False
        # True once written, False when the lease was lost to another delivery; None until then.
        self.finished: bool | None = None

    async def prepare(self) -> None:
        """Check out the mark's connection now, just before the step that makes the effect final,
        so no pool wait or stale-connection ping lands between that step and the mark."""
        if self._session is not None:
            return
        # Autocommit: the UPDATE is durable as it returns, with no BEGIN or COMMIT round trip.
        autocommit = self._sessionmaker(autocommit=True)
        self._session = await self._open.enter_async_context(autocommit)

    async def record(self) -> None:
        """The effect is final: mark the row done. A second call does nothing."""
        if self.started:
            return
        self.started = True
        await self.prepare()
        assert self._session is not None
        self.finished = await outbox.mark_done(self._session, self._message)

    async def close(self) -> None:
        self._session = None
        await self._open.aclose()


Handler = Callable[[outbox.ClaimedMessage, Completion], Awaitable[None]]


class PermanentJobError(Exception):
    """Retrying cannot help (a refused recipient, a broken template): fail the row at once."""


@dataclass(frozen=True)
class JobRuntime:
    """What job functions need, built once per process from the settings."""

    sessionmaker: Sessions
    handlers: Mapping[str, Handler]
    retry: outbox.RetryPolicy
    lease: timedelta
    # Deliveries under way in this process, so a stopping process can hand them back.
    running: set[asyncio.Task[Any]] = field(default_factory=set, compare=False)

    async def release_running(self) -> None:
        """Cancel the deliveries still running (the stop's grace is over): each puts its row
        back, due now, for another worker."""
        tasks = list(self.running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        sessionmaker: Sessions,
        handlers: Mapping[str, Handler],
    ) -> JobRuntime:
        retry = outbox.RetryPolicy(
            settings.job_max_attempts,
            settings.job_retry_base_seconds,
            settings.job_retry_max_seconds,
        )
        return cls(sessionmaker, handlers, retry, timedelta(seconds=settings.job_lease_seconds))


async def release(
    runtime: JobRuntime, message: outbox.ClaimedMessage, log: structlog.stdlib.BoundLogger
) -> None:
    """A stopping worker cancelled this delivery: the row is due again at once, not at the end of
    its lease. Shielded, so a second cancel cannot cut the write short."""

    async def write() -> bool:
        async with runtime.sessionmaker() as session:
            released = await outbox.release(session, message)
            await session.commit()
        return released

    writing = asyncio.ensure_future(write())
    try:
        try:
            released = await asyncio.shield(writing)
        except asyncio.CancelledError:
            released = await writing  # cancelled again: the write still ends before we do
    except (SQLAlchemyError, OSError) as error:
        # The lease still runs out, so the row is delivered later all the same.
        log.warning("job_release_failed", error=describe(error))
        return
    log.info("job_released", released=released)
    if released:
        JOBS.labels(kind=message.kind, outcome="released").inc()


async def _run_tracked(
    runtime: JobRuntime,
    handler: Handler,
    message: outbox.ClaimedMessage,
    completion: Completion,
) -> None:
    task = asyncio.current_task()
    if task is not None:
        runtime.running.add(task)
    try:
        await handler(message, completion)
    finally:
        runtime.running.discard(task)


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".strip()


async def deliver(runtime: JobRuntime, message_id: uuid.UUID) -> OutboxStatus | None:
    """Returns the row's new status, or None when another delivery already has or had it."""
    async with runtime.sessionmaker() as session:
        message = await outbox.start_processing(session, message_id, runtime.lease)
        await session.commit()
    if message is None:
        logger.info("job_skipped", outbox_id=str(message_id), reason="done or held elsewhere")
        return None
    log = logger.bind(outbox_id=str(message.id), kind=message.kind, attempt=message.attempts)
    completion = Completion(runtime.sessionmaker, message)
    try:
        return await _run_and_record(runtime, message, completion, log)
    finally:
        await completion.close()


async def _run_and_record(
    runtime: JobRuntime,
    message: outbox.ClaimedMessage,
    completion: Completion,
    log: structlog.stdlib.BoundLogger,
) -> OutboxStatus:
    handler = runtime.handlers.get(message.kind)
    try:
        if message.attempts > runtime.retry.max_attempts:
            raise PermanentJobError("attempts exhausted: the last ones outlived their lease")
        if handler is None:
            raise PermanentJobError(f"no handler for outbox kind {message.kind!r}")
        # Bounded well inside the lease, so no other delivery takes the row while this one runs.
        async with asyncio.timeout(runtime.lease.total_seconds() / 2):
            await _run_tracked(runtime, handler, message, completion)
        await completion.record()
    except asyncio.CancelledError:
        # Once the effect happened the row is not handed back untried: its mark decides.
        if not completion.started:
            await completion.close()  # one pooled connection a job at most
            await release(runtime, message, log)
        raise
    except Exception as error:
        await completion.close()
        if completion.started:
            if completion.finished is None:
                raise  # the mark failed: the lease runs out and the row is delivered again
            # The effect happened and is recorded; only the handler's clean-up failed.
            log.warning("job_cleanup_failed", error=describe(error))
        else:
            return await _record_failure(runtime, message, error, log)
    if not completion.finished:
        log.warning("job_lease_lost", detail="the row was taken over; its new holder decides")
    log.info("job_succeeded")
    JOBS.labels(kind=message.kind, outcome="succeeded").inc()
    return OutboxStatus.DONE


async def _record_failure(
    runtime: JobRuntime,
    message: outbox.ClaimedMessage,
    error: Exception,
    log: structlog.stdlib.BoundLogger,
) -> OutboxStatus:
    async with runtime.sessionmaker() as session:
        status = await outbox.record_failure(
            session,
            message,
            describe(error),
            runtime.retry,
            permanent=isinstance(error, PermanentJobError),
        )
        await session.commit()
    if status is OutboxStatus.FAILED:
        log.error("job_failed", error=describe(error))
        JOBS.labels(kind=message.kind, outcome="failed").inc()
    else:
        log.warning("job_retry_scheduled", error=describe(error))
        JOBS.labels(kind=message.kind, outcome="retried").inc()
    return status
