"""The job queue: taskiq's in-memory broker in embedded mode, a Redis stream in production."""

from __future__ import annotations

import uuid
from typing import Annotated

from taskiq import AsyncBroker, Context, InMemoryBroker, TaskiqDepends
from taskiq_redis import RedisStreamBroker

from order_api.config import Settings
from order_api.jobs.delivery import JobRuntime, deliver
from order_api.jobs.relay import Kick

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


def create_broker(settings: Settings, runtime: JobRuntime) -> AsyncBroker:
    broker: AsyncBroker
    if settings.redis_url is None:
        broker = InMemoryBroker(max_async_tasks=10, max_stored_results=1)
    else:
        broker = RedisStreamBroker(
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
