"""The general limit's counter on a real Redis: exact answers, few round trips, shared windows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
from limits import parse

from order_api.platform.limits.window_counter import FLUSH_SECONDS, BatchedWindowCounter

# Redis only: run once, in the production back-end's run, not once per database.
pytestmark = pytest.mark.only_backend("postgresql")


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def counted(client: redis.asyncio.Redis, prefix: str) -> int:
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
    values = [int(await client.get(key) or 0) for key in keys]
    return sum(values)


async def allowed_of(counter: BatchedWindowCounter, hits: int, key: str = "198.51.100.7") -> int:
    answers = await asyncio.gather(*(counter.hit(key) for _ in range(hits)))
    return sum(answer is None for answer in answers)


async def evalsha_calls(client: redis.asyncio.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_concurrent_hits_get_exactly_the_limit(
    client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    counter = BatchedWindowCounter(client, redis_prefix, parse("100/minute"))
    assert await allowed_of(counter, 300) == 100
    refused = await counter.hit("198.51.100.7")
    assert refused is not None
    assert 0 < refused <= 120
    assert await allowed_of(counter, 5, key="198.51.100.8") == 5  # another address, its own window
    await asyncio.sleep(3 * FLUSH_SECONDS)
    assert await counted(client, redis_prefix) == 105  # refused hits are not counted


async def test_hits_far_below_the_limit_share_round_trips(
    client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    counter = BatchedWindowCounter(client, redis_prefix, parse("1000000/minute"))
    before = await evalsha_calls(client)
    for _ in range(1000):
        assert await counter.hit("198.51.100.7") is None
    await asyncio.sleep(3 * FLUSH_SECONDS)
    assert await counted(client, redis_prefix) == 1000
    assert await evalsha_calls(client) - before < 100


async def test_processes_count_in_the_same_window(
    client: redis.asyncio.Redis, redis_prefix: str
) -> None:
    rate = parse("10/minute")
    first, second = (BatchedWindowCounter(client, redis_prefix, rate) for _ in range(2))
    assert await allowed_of(first, 6) == 6
    await asyncio.sleep(3 * FLUSH_SECONDS)
    assert await allowed_of(second, 6) == 4
    assert await allowed_of(first, 1) == 0


async def test_an_unreachable_redis_fails_the_hits_that_need_it(redis_prefix: str) -> None:
    unreachable = redis.asyncio.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    counter = BatchedWindowCounter(unreachable, redis_prefix, parse("10/minute"))
    with pytest.raises(redis.exceptions.ConnectionError):
        await counter.hit("198.51.100.7")
    await unreachable.aclose()
