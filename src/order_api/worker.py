"""Wires one process's background machinery: job handlers, broker, outbox relay, worker loop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio
import structlog
from redis.exceptions import RedisError, ResponseError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from taskiq import AsyncBroker, InMemoryBroker
from taskiq.receiver import Receiver

from order_api.config import Settings
from order_api.jobs.broker import create_broker, job_stream, kicker, worker_group
from order_api.jobs.delivery import Handler, JobRuntime
from order_api.jobs.relay import OutboxRelay
from order_api.notifications.emails import EMAIL_KIND
from order_api.notifications.tasks import EmailDelivery
from order_api.orders.events import ORDER_EVENT_KIND, OrderEventPublisher
from order_api.platform.adapters.pubsub import PubSub, RedisPubSub
from order_api.platform.adapters.redis_connection import connect_redis
from order_api.platform.db.engine import create_engine, create_sessionmaker

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
        sessionmaker: async_sessionmaker[AsyncSession],
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


async def run_worker(settings: Settings, concurrency: int) -> None:
    """Consume the Redis job stream until SIGTERM or SIGINT, then finish running jobs and exit."""
    engine = create_engine(settings)
    redis_client = connect_redis(str(settings.redis_url), settings)
    pubsub = RedisPubSub(redis_client, settings.redis_prefix)
    background = Background.create(settings, create_sessionmaker(engine), pubsub)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await background.start(queue_required=True)
    logger.info("worker_started", concurrency=concurrency, queue=job_stream(settings))
    heartbeat = None
    if settings.worker_heartbeat_file is not None:
        heartbeat = asyncio.create_task(beat(settings.worker_heartbeat_file, stopping))
    try:
        while not stopping.is_set():
            receiver = Receiver(
                background.broker,
                max_async_tasks=concurrency,
                run_startup=False,
                # Running jobs get the stop's grace; then Background.stop hands them back.
                wait_tasks_timeout=settings.shutdown_timeout_seconds,
            )
            try:
                await receiver.listen(stopping)
            except* (RedisError, OSError) as lost:
                logger.warning("job_queue_lost", error=repr(lost.exceptions[0]))
                await _wait_for_queue(redis_client, settings, stopping)
    finally:
        logger.info("worker_stopping")
        if heartbeat is not None:
            # Stopped, not cancelled: a cancel could land while a touch runs in its thread, and
            # that touch could then recreate the file after beat's unlink.
            stopping.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(heartbeat, HEARTBEAT_SECONDS)
        # taskiq only waited out the grace: what still runs is handed back before anything stops.
        await background.runtime.release_running()
        await background.stop()
        await redis_client.aclose()
        await engine.dispose()
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


async def _wait_for_queue(
    redis_client: redis.asyncio.Redis, settings: Settings, stopping: asyncio.Event
) -> None:
    """Until Redis answers again, with the consumer group back (a restart without persistence
    loses it, and taskiq declares it only at start-up)."""
    delay = 0.5
    while not stopping.is_set():
        try:
            await redis_client.xgroup_create(
                job_stream(settings), worker_group(settings), id="0", mkstream=True
            )
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        except (RedisError, OSError):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
            delay = min(delay * 2, 5.0)
            continue
        logger.info("job_queue_back")
        return
