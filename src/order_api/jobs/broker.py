"""The job queue: taskiq's in-memory broker in embedded mode, a Redis stream in production."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator
from typing import Annotated

import redis.asyncio
import structlog
from redis.exceptions import RedisError, ResponseError
from taskiq import AckableMessage, AsyncBroker, Context, InMemoryBroker, TaskiqDepends
from taskiq_redis import RedisStreamBroker

from order_api.config import Settings
from order_api.jobs.delivery import JobRuntime, deliver
from order_api.jobs.relay import Kick

logger = structlog.get_logger(__name__)
DELIVER_TASK = "outbox.deliver"
# How long one XREADGROUP blocks; the socket timeout must exceed it.
STREAM_BLOCK_MS = 2000
STREAM_MAX_LENGTH = 100_000


async def deliver_outbox_message(
    message_id: str, context: Annotated[Context, TaskiqDepends()]
) -> None:
    """The one job function: deliver an outbox row. Failures are recorded on the row, not raised."""
    runtime: JobRuntime = context.state.runtime
    await deliver(runtime, uuid.UUID(message_id))


def job_stream(settings: Settings) -> str:
    return f"{settings.redis_prefix}:jobs"


def worker_group(settings: Settings) -> str:
    return f"{settings.redis_prefix}:workers"


class JobStreamBroker(RedisStreamBroker):
    """taskiq-redis's stream broker, whose `listen` waits out a Redis outage: taskiq's receiver
    loop starts listening again at once after an error (thousands of times a second, measured,
    with Redis down)."""

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        while True:
            try:
                async with contextlib.aclosing(super().listen()) as messages:
                    async for message in messages:
                        yield message
                return
            except (RedisError, OSError) as error:
                logger.warning("job_queue_lost", error=repr(error))
            await self.wait_for_queue()

    async def wait_for_queue(self) -> None:
        """Until Redis answers again, with the consumer group back (a restart without persistence
        loses it, and taskiq declares it only at start-up)."""
        delay = 0.5
        async with redis.asyncio.Redis(connection_pool=self.connection_pool) as client:
            while True:
                try:
                    await client.xgroup_create(
                        self.queue_name, self.consumer_group_name, self.consumer_id, mkstream=True
                    )
                    break
                except ResponseError as error:
                    if "BUSYGROUP" in str(error):  # the group outlived the outage
                        break
                    logger.warning("job_queue_unusable", error=repr(error))
                except (RedisError, OSError):
                    pass
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        logger.info("job_queue_back")


def create_broker(settings: Settings, runtime: JobRuntime) -> AsyncBroker:
    broker: AsyncBroker
    if settings.redis_url is None:
        broker = InMemoryBroker(max_async_tasks=10, max_stored_results=1)
    else:
        broker = JobStreamBroker(
            settings.redis_url,
            queue_name=job_stream(settings),
            consumer_group_name=worker_group(settings),
            consumer_id="0",  # a group created after the first kick still reads it
            xread_block=STREAM_BLOCK_MS,
            maxlen=STREAM_MAX_LENGTH,
            # A killed worker's unacknowledged job goes to another worker after one lease.
            idle_timeout=int(settings.job_lease_seconds * 1000),
            unacknowledged_lock_timeout=settings.job_lease_seconds,
            socket_timeout=settings.redis_timeout_seconds + STREAM_BLOCK_MS / 1000,
            socket_connect_timeout=settings.redis_timeout_seconds,
        )
    broker.register_task(deliver_outbox_message, task_name=DELIVER_TASK)
    broker.state.runtime = runtime
    return broker


def kicker(broker: AsyncBroker) -> Kick:
    task = broker.find_task(DELIVER_TASK)
    assert task is not None, "create_broker registers the delivery task"

    async def kick(message_id: uuid.UUID) -> None:
        await task.kiq(str(message_id))

    return kick
