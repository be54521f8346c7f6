"""The live order stream of one API process: one pub-sub subscription in, every socket out.

Each socket is a `Watcher` with a bounded backlog: the hub only ever puts without waiting, so a
slow client is closed (1013) instead of delaying anyone else. The hub also holds the process's
caps on open sockets, per user and per client address (4429 beyond them).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, TypeVar

import structlog
from fastapi import Depends
from fastapi.requests import HTTPConnection
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from order_api.auth.service import revocation_cutoffs
from order_api.orders.events import ORDERS_CHANNEL
from order_api.orders.models import OrderStatus
from order_api.platform.adapters import PubSub
from order_api.platform.db import Sessions, reading_session
from order_api.platform.telemetry import (
    ORDER_EVENT_DELAY,
    STREAM_MESSAGES_DROPPED,
    WEBSOCKET_CLOSES,
    WEBSOCKETS_OPEN,
)

logger = structlog.get_logger(__name__)

Key = TypeVar("Key")

MAX_EVENT_BYTES = 4096  # ours are ~200 bytes; anything bigger on the channel is not an event


@dataclass(frozen=True)
class Closing:
    """Why the server ends a socket; code None: the client is already gone."""

    code: int | None
    reason: str


TOKEN_REFUSED = 4401
NOT_ALLOWED = 4403
# HTTP 429's twin, as 4401/4403 are 401's and 403's: too many sockets or handshakes, retry later.
TOO_MANY = 4429
LIFETIME_REACHED = Closing(4000, "connection lifetime reached; reconnect")
TOKEN_EXPIRED = Closing(TOKEN_REFUSED, "access token expired; reconnect with a fresh one")
TOKEN_REVOKED = Closing(TOKEN_REFUSED, "access token revoked")
FELL_BEHIND = Closing(1013, "too many events waiting; reconnect and re-read the order history")
NOT_READING = Closing(1013, "the connection took no frame for a heartbeat; reconnect and re-read")
USER_SOCKETS_FULL = Closing(TOO_MANY, "too many open sockets for this account; retry later")
ADDRESS_SOCKETS_FULL = Closing(TOO_MANY, "too many open sockets from this address; retry later")
SHUTTING_DOWN = Closing(1001, "server shutting down; reconnect")
STREAM_INTERRUPTED = Closing(1012, "event stream interrupted; reconnect and re-read the history")
CLIENT_GONE = Closing(None, "client went away")


class SocketCapReached(Exception):
    """The user or the address already holds as many sockets as this process allows."""

    def __init__(self, closing: Closing) -> None:
        super().__init__(closing.reason)
        self.closing = closing


class StreamEvent(BaseModel):
    """An order event as the outbox publishes it; sockets get it without `customer_id`."""

    model_config = ConfigDict(extra="ignore")

    order_id: uuid.UUID
    customer_id: uuid.UUID
    status: OrderStatus
    previous_status: OrderStatus | None
    at: datetime

    def frame(self) -> str:
        return self.model_dump_json(exclude={"customer_id"})


@dataclass(frozen=True)
class Viewer:
    """Who holds a socket and what it may see: one customer's orders, or (None) every order."""

    user_id: uuid.UUID
    token_issued_at: float
    token_expires_at: float
    customer_id: uuid.UUID | None


@dataclass(eq=False)
class Watcher:
    viewer: Viewer
    backlog: int
    frames: asyncio.Queue[str] = field(init=False)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    closing: Closing | None = None

    def __post_init__(self) -> None:
        self.frames = asyncio.Queue(self.backlog)

    def offer(self, frame: str) -> None:
        if self.closing is not None:
            return
        try:
            self.frames.put_nowait(frame)
        except asyncio.QueueFull:
            self.end(FELL_BEHIND)

    def end(self, closing: Closing) -> None:
        if self.closing is None:
            self.closing = closing
            self.ended.set()


class OrderStream:
    """The hub: registers watchers, relays published events to them, ends revoked ones."""

    def __init__(
        self,
        pubsub: PubSub,
        sessionmaker: Sessions,
        *,
        heartbeat_seconds: float,
        backlog: int,
        max_lifetime_seconds: float,
        max_sockets_per_user: int,
        max_sockets_per_address: int,
    ) -> None:
        self.heartbeat_seconds = heartbeat_seconds
        self._max_per_user = max_sockets_per_user
        self._max_per_address = max_sockets_per_address
        self._open_by_user: Counter[uuid.UUID] = Counter()
        self._open_by_address: Counter[str] = Counter()
        self._pubsub = pubsub
        self._sessionmaker = sessionmaker
        self._backlog = backlog
        self._max_lifetime = max_lifetime_seconds
        self._by_customer: dict[uuid.UUID, set[Watcher]] = {}
        self._every_order: set[Watcher] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()

    async def start(self, wait_seconds: float) -> None:
        """Subscribes, waiting up to `wait_seconds` so sockets opened just after miss nothing."""
        self._tasks = [
            asyncio.create_task(self._relay_events(), name="order-stream-relay"),
            asyncio.create_task(self._end_revoked_periodically(), name="order-stream-revocations"),
        ]
        for task in self._tasks:
            task.add_done_callback(_report_death)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), wait_seconds)

    async def stop(self) -> None:
        self.end_all(SHUTTING_DOWN)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def watchers(self) -> list[Watcher]:
        every = list(self._every_order)
        for group in self._by_customer.values():
            every.extend(group)
        return every

    @contextlib.contextmanager
    def watch(self, viewer: Viewer, address: str) -> Iterator[Watcher]:
        """Registers a socket's watcher for as long as the socket lives, with its deadline set;
        raises SocketCapReached, registering nothing, when its user or `address` is at a cap."""
        # Checked and taken with no await in between: concurrent handshakes cannot both pass.
        if self._open_by_user[viewer.user_id] >= self._max_per_user:
            raise SocketCapReached(USER_SOCKETS_FULL)
        if self._open_by_address[address] >= self._max_per_address:
            raise SocketCapReached(ADDRESS_SOCKETS_FULL)
        self._open_by_user[viewer.user_id] += 1
        self._open_by_address[address] += 1
        watcher = Watcher(viewer, self._backlog)
        group = (
            self._every_order
            if viewer.customer_id is None
            else self._by_customer.setdefault(viewer.customer_id, set())
        )
        stream = "every_order" if viewer.customer_id is None else "customer"
        group.add(watcher)
        WEBSOCKETS_OPEN.labels(stream).inc()
        deadline = self._deadline(watcher)
        try:
            yield watcher
        finally:
            deadline.cancel()
            group.discard(watcher)
            if viewer.customer_id is not None and not group:
                del self._by_customer[viewer.customer_id]
            WEBSOCKETS_OPEN.labels(stream).dec()
            _release(self._open_by_user, viewer.user_id)
            _release(self._open_by_address, address)
            if watcher.closing is not None and watcher.closing.code is not None:
                WEBSOCKET_CLOSES.labels(str(watcher.closing.code)).inc()

    def dispatch(self, message: bytes) -> None:
        """One published message to every watcher allowed to see it; anything else is dropped."""
        try:
            if len(message) > MAX_EVENT_BYTES:
                raise ValueError(f"{len(message)} bytes")
            event = StreamEvent.model_validate_json(message)
        except (ValidationError, ValueError) as error:
            STREAM_MESSAGES_DROPPED.inc()
            logger.warning("stream_message_dropped", error=str(error)[:200])
            return
        # `at` comes from the clock of the process that made the change: skew is no negative age.
        ORDER_EVENT_DELAY.observe(max(time.time() - event.at.timestamp(), 0.0))
        frame = event.frame()
        for watcher in self._every_order:
            watcher.offer(frame)
        for watcher in self._by_customer.get(event.customer_id, ()):
            watcher.offer(frame)

    async def end_revoked(self) -> None:
        """Ends every socket whose token was revoked, or whose account was deactivated."""
        watchers = self.watchers()
        if not watchers:
            return
        async with reading_session(self._sessionmaker) as session:
            cutoffs = await revocation_cutoffs(session, {w.viewer.user_id for w in watchers})
        for watcher in watchers:
            if watcher.viewer.token_issued_at < cutoffs.get(watcher.viewer.user_id, math.inf):
                watcher.end(TOKEN_REVOKED)

    def _deadline(self, watcher: Watcher) -> asyncio.TimerHandle:
        """The socket ends when its token expires, or at the lifetime cap if that comes first."""
        loop = asyncio.get_running_loop()
        token_left = watcher.viewer.token_expires_at - time.time()
        if token_left <= self._max_lifetime:
            return loop.call_later(max(token_left, 0), watcher.end, TOKEN_EXPIRED)
        return loop.call_later(self._max_lifetime, watcher.end, LIFETIME_REACHED)

    def end_all(self, closing: Closing) -> None:
        for watcher in self.watchers():
            watcher.end(closing)

    async def _relay_events(self) -> None:
        # After a lost subscription, events may have gone by: every socket reconnects and re-reads.
        interrupted = functools.partial(self.end_all, STREAM_INTERRUPTED)
        async with self._pubsub.subscribe(ORDERS_CHANNEL, interrupted) as messages:
            self._subscribed.set()
            async for message in messages:
                self.dispatch(message)

    async def _end_revoked_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            try:
                await self.end_revoked()
            except (SQLAlchemyError, OSError) as error:
                # The next beat tries again; meanwhile sockets keep their last known right.
                logger.warning("stream_revocation_check_failed", error=repr(error))


def _release(open_sockets: Counter[Key], key: Key) -> None:
    open_sockets[key] -= 1
    if open_sockets[key] <= 0:
        del open_sockets[key]  # a process sees many addresses: forget the ones with no socket


def _report_death(task: asyncio.Task[None]) -> None:
    """These tasks run for the process's life: one that ends on its own is a bug to see at once."""
    if not task.cancelled():
        logger.error("order_stream_task_died", task=task.get_name(), error=repr(task.exception()))


async def app_order_stream(connection: HTTPConnection) -> OrderStream:
    hub: OrderStream = connection.app.state.order_stream
    return hub


OrderStreamDep = Annotated[OrderStream, Depends(app_order_stream)]
