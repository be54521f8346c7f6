"""Wires one process's background machinery: job handlers, broker, outbox relay, worker loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from redis.exceptions import RedisError
from taskiq import AsyncBroker, InMemoryBroker, TaskiqMessage, TaskiqMiddleware
from taskiq.api import run_receiver_task

from order_api.config import Settings
from order_api.jobs.broker import create_broker, job_stream, kicker
from order_api.jobs.delivery import Handler, JobRuntime
from order_api.jobs.relay import OutboxRelay
from order_api.notifications.emails import EMAIL_KIND
from order_api.notifications.tasks import EmailDelivery
from order_api.orders.events import ORDER_EVENT_KIND, OrderEventPublisher
from order_api.platform.adapters import PubSub, RedisPubSub, connect_redis
from order_api.platform.db import Sessions, create_engine, create_sessions

logger = structlog.get_logger(__name__)
HEARTBEAT_SECONDS = 5.0


def job_handlers(settings: Settings, pubsub: PubSub) -> dict[str, Handler]:
    """Every kind of outbox row a job can deliver (order events only when an older version
    queued them: the relay publishes events itself)."""
    return {
        EMAIL_KIND: EmailDelivery.from_settings(settings),
        ORDER_EVENT_KIND: OrderEventPublisher(pubsub),
    }


@dataclass
class Background:
    broker: AsyncBroker
    relay: OutboxRelay
    runtime: JobRuntime

    @classmethod
    def create(
        cls,
        settings: Settings,
        sessionmaker: Sessions,
        pubsub: PubSub,
    ) -> Background:
        handlers = job_handlers(settings, pubsub)
        runtime = JobRuntime.from_settings(settings, sessionmaker, handlers)
        broker = create_broker(settings, runtime)
        relay = OutboxRelay(
            sessionmaker,
            kicker(broker),
            # Not queued behind e-mails: one publish, so the relay delivers events itself.
            publishers={ORDER_EVENT_KIND: OrderEventPublisher(pubsub).publish},
            poll_seconds=settings.outbox_poll_seconds,
            lease_seconds=settings.job_lease_seconds,
        )
        return cls(broker, relay, runtime)

    async def start(self, *, queue_required: bool = False) -> None:
        try:
            await self.broker.startup()
        except (RedisError, OSError) as error:
            if queue_required:
                raise
            # An API process serves without the queue; the outbox keeps the work until it returns.
            logger.warning("job_queue_unreachable_at_start", error=repr(error))
        self.relay.wake_after_outbox_commits()
        self.relay.start()

    async def stop(self) -> None:
        await self.relay.stop()
        if isinstance(self.broker, InMemoryBroker):
            # In-process jobs finish before the database goes; an interrupted one is re-relayed.
            await self.broker.wait_all()
        await self.broker.shutdown()


class RunningJobs(TaskiqMiddleware):
    """The jobs this process runs, each whole (the delivery, its result, its acknowledgement):
    taskiq's `run_receiver_task` stops taking jobs when cancelled, and leaves them running."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks: set[asyncio.Task[Any]] = set()

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return message

    async def finished(self) -> None:
        """When every job running now has ended."""
        if self.tasks:
            await asyncio.wait(set(self.tasks))


async def run_worker(settings: Settings, concurrency: int) -> None:
    """Consume the Redis job stream until SIGTERM or SIGINT, then finish running jobs and exit."""
    engine = create_engine(settings)
    redis_client = connect_redis(str(settings.redis_url), settings)
    pubsub = RedisPubSub(redis_client, settings.redis_prefix)
    background = Background.create(settings, create_sessions(engine, settings), pubsub)
    running = RunningJobs()
    background.broker.add_middlewares(running)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await background.start(queue_required=True)
    logger.info("worker_started", concurrency=concurrency, queue=job_stream(settings))
    heartbeat = None
    if settings.worker_heartbeat_file is not None:
        heartbeat = asyncio.create_task(beat(settings.worker_heartbeat_file, stopping))
    # Redis lost meanwhile is waited out in the broker's `listen` (jobs.broker.JobStreamBroker).
    receiving = asyncio.create_task(
        run_receiver_task(background.broker, max_async_tasks=concurrency, run_startup=False)
    )
    receiving.add_done_callback(lambda _: stopping.set())  # ended by an error: the worker too
    try:
        await stopping.wait()
    finally:
        logger.info("worker_stopping")
        receiving.cancel()  # no job is taken any more; the running ones go on
        await asyncio.wait([receiving])
        # Running jobs get the stop's grace; then what still runs is handed back.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settings.shutdown_timeout_seconds):
                await running.finished()
        if heartbeat is not None:
            # Stopped, not cancelled: a cancel could land while a touch runs in its thread, and
            # that touch could then recreate the file after beat's unlink.
            stopping.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(heartbeat, HEARTBEAT_SECONDS)
        await background.runtime.release_running()
        await background.stop()
        await redis_client.aclose()
        await engine.dispose()
    if not receiving.cancelled() and (error := receiving.exception()) is not None:
        raise error
    logger.info("worker_stopped")


async def beat(path: Path, stopping: asyncio.Event) -> None:
    """Touch `path` every few seconds from the event loop: a blocked or dead worker goes stale."""
    try:
        while not stopping.is_set():
            try:
                await asyncio.to_thread(touch, path)
            except OSError as error:
                logger.warning("worker_heartbeat_failed", path=str(path), error=repr(error))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), HEARTBEAT_SECONDS)
    finally:
        # A stopped worker is not alive, whatever the file's age says.
        await asyncio.to_thread(path.unlink, missing_ok=True)


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
