"""Publish and subscribe: in-process for embedded mode, Redis (fan-out to every process) else."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

import redis.asyncio
import structlog
from redis.exceptions import RedisError

from order_api.platform.telemetry.logs import PUBSUB_RECONNECTS

logger = structlog.get_logger(__name__)


class PubSub(Protocol):
    async def publish(self, channel: str, message: bytes) -> None:
        """Deliver to every current subscriber; raises when the transport is down (retry later)."""

    def subscribe(
        self, channel: str, on_resubscribed: Callable[[], None] = lambda: None
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Messages published on the channel from now on, until the context ends.

        The iterator never ends by itself: a lost transport is re-established behind it, then
        `on_resubscribed` is called, since what was published meanwhile is missed.
        """


class InProcessPubSub:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue[bytes]]] = {}

    async def publish(self, channel: str, message: bytes) -> None:
        for queue in self._subscribers.get(channel, ()):
            queue.put_nowait(message)

    @asynccontextmanager
    async def subscribe(
        self, channel: str, on_resubscribed: Callable[[], None] = lambda: None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()  # in one process nothing is ever lost
        self._subscribers.setdefault(channel, set()).add(queue)
        try:
            yield _drain(queue)
        finally:
            self._subscribers[channel].discard(queue)


class RedisPubSub:
    """Redis channels `{prefix}:events:{channel}`; subscriptions reconnect and resubscribe."""

    def __init__(
        self, client: redis.asyncio.Redis, prefix: str, *, ping_seconds: float = 5.0
    ) -> None:
        self._client = client
        self._prefix = f"{prefix}:events:"
        self._ping_seconds = ping_seconds

    async def publish(self, channel: str, message: bytes) -> None:
        await self._client.publish(self._prefix + channel, message)

    @asynccontextmanager
    async def subscribe(
        self, channel: str, on_resubscribed: Callable[[], None] = lambda: None
    ) -> AsyncIterator[AsyncIterator[bytes]]:
        subscription = _RedisSubscription(
            self._client, self._prefix + channel, self._ping_seconds, on_resubscribed
        )
        await subscription.connect()  # subscribed on entry when Redis is up; retried if not
        try:
            yield subscription.messages()
        finally:
            await subscription.disconnect()


class _RedisSubscription:
    RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS = 0.1, 2.0

    def __init__(
        self,
        client: redis.asyncio.Redis,
        channel: str,
        ping_seconds: float,
        on_resubscribed: Callable[[], None],
    ) -> None:
        self._client = client
        self._channel = channel
        self._ping_seconds = ping_seconds
        self._on_resubscribed = on_resubscribed
        self._pubsub: redis.asyncio.client.PubSub | None = None

    async def connect(self) -> redis.asyncio.client.PubSub | None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._channel)
        except (RedisError, OSError) as error:
            logger.warning("pubsub_subscribe_failed", channel=self._channel, error=_describe(error))
            await _close_quietly(pubsub)
            return None
        # redis-py may reconnect (and resubscribe) under us inside a read: hear of that too.
        if pubsub.connection is not None:
            pubsub.connection.register_connect_callback(self._reconnected_underneath)
        self._pubsub = pubsub
        return pubsub

    async def disconnect(self) -> None:
        if self._pubsub is not None:
            if self._pubsub.connection is not None:  # it goes back to the pool: leave it clean
                self._pubsub.connection.deregister_connect_callback(self._reconnected_underneath)
            await _close_quietly(self._pubsub)
            self._pubsub = None

    async def _reconnected_underneath(self, connection: object) -> None:
        self._resubscribed()

    def _resubscribed(self) -> None:
        PUBSUB_RECONNECTS.inc()
        logger.info("pubsub_resubscribed", channel=self._channel)
        self._on_resubscribed()

    async def messages(self) -> AsyncIterator[bytes]:
        delay = self.RETRY_FIRST_SECONDS
        while True:
            pubsub = self._pubsub
            if pubsub is None:
                # Full jitter: processes that lost Redis together do not return in lock-step.
                await asyncio.sleep(random.uniform(0, delay))  # noqa: S311 - not cryptographic
                delay = min(delay * 2, self.RETRY_MAX_SECONDS)
                pubsub = await self.connect()
                if pubsub is None:
                    continue
                self._resubscribed()
            delay = self.RETRY_FIRST_SECONDS
            try:
                async for data in self._read(pubsub):
                    yield data
            except (RedisError, OSError) as error:
                logger.warning(
                    "pubsub_connection_lost", channel=self._channel, error=_describe(error)
                )
                await self.disconnect()

    async def _read(self, pubsub: redis.asyncio.client.PubSub) -> AsyncIterator[bytes]:
        """Messages as they come; a PING when idle, and a silent server counts as lost."""
        last_heard = time.monotonic()
        while True:
            message = await pubsub.get_message(timeout=self._ping_seconds)
            if message is None:
                if time.monotonic() - last_heard > 3 * self._ping_seconds:
                    raise RedisError("no answer to three pings")  # a hung server sends no RST
                await pubsub.ping()
                continue
            last_heard = time.monotonic()
            if message["type"] == "message":
                yield message["data"]


def _describe(error: BaseException) -> str:
    # redis-py 8's repr() is only "network:ConnectionError": keep the message too.
    return f"{type(error).__name__}: {error}"


async def _close_quietly(pubsub: redis.asyncio.client.PubSub) -> None:
    # A connection already gone has nothing left to release.
    with contextlib.suppress(RedisError, OSError):
        await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis-py 8.2


async def _drain(queue: asyncio.Queue[bytes]) -> AsyncIterator[bytes]:
    while True:
        yield await queue.get()
