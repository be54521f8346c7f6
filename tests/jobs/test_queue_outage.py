"""While the job queue (Redis) is unreachable, committed work waits in the outbox; none is lost."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis.asyncio
from fastapi import FastAPI

from order_api.jobs.models import OutboxStatus
from tests.jobs.conftest import FAST_JOBS, outbox_row, queue_and_commit
from tests.redis_server import RedisProcess, own_redis
from tests.support import AppBuilder
from tests.waiting import wait_until

PREFIX = "order-api-outage"


@pytest.fixture
def late_redis() -> Iterator[RedisProcess]:
    with own_redis() as server:
        yield server


async def stream_length(url: str) -> int:
    client = redis.asyncio.Redis.from_url(url)
    try:
        return int(await client.xlen(f"{PREFIX}:jobs"))
    except redis.RedisError:
        return 0
    finally:
        await client.aclose()


async def test_work_committed_while_the_queue_is_down_is_handed_over_when_it_returns(
    make_app: AppBuilder, late_redis: RedisProcess
) -> None:
    app: FastAPI = await make_app(
        **FAST_JOBS, redis_url=late_redis.url, redis_prefix=PREFIX, job_lease_seconds=0.5
    )
    message_id = await queue_and_commit(app)
    await app.state.background.relay.relay_due()
    row = await outbox_row(app, message_id)
    assert row is not None
    assert row.status == OutboxStatus.PENDING

    late_redis.start()

    async def handed_over() -> bool:
        current = await outbox_row(app, message_id)
        return current is not None and current.status == OutboxStatus.DISPATCHED

    await wait_until(handed_over, "the relay to hand the row to the returned queue")
    assert await stream_length(late_redis.url) == 1
