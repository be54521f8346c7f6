"""The relay: delivers committed outbox rows, woken by commits and a timer.

Kinds with a publisher (order events: one pub-sub message each) are published by the relay itself
and marked done; every other kind (e-mail: an SMTP exchange) is handed to the job queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session

from order_api.jobs import outbox
from order_api.platform.db import Sessions
from order_api.platform.telemetry import OUTBOX_RELAYED

logger = structlog.get_logger(__name__)

Kick = Callable[[uuid.UUID], Awaitable[None]]
Publish = Callable[[dict[str, Any]], Awaitable[None]]
# Rows handed off but not finished are handed off again after this many job leases.
REDELIVERY_LEASES = 10
# The relay's share of a graceful stop: its pass under way, then a last one.
STOP_SECONDS = 5.0


class OutboxRelay:
    def __init__(
        self,
        sessionmaker: Sessions,
        kick: Kick,
        *,
        publishers: Mapping[str, Publish] | None = None,
        poll_seconds: float,
        lease_seconds: float,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.kick = kick
        self.publishers = dict(publishers or {})
        self.poll_seconds = poll_seconds
        self.lease = timedelta(seconds=lease_seconds)
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def wake_after_outbox_commits(self) -> None:
        """Wake on every commit of this sessionmaker's sessions that wrote to the outbox."""

        def after_commit(session: Session) -> None:
            if session.info.pop(outbox.OUTBOX_WRITTEN, False):
                self.wake()

        def after_rollback(session: Session) -> None:
            session.info.pop(outbox.OUTBOX_WRITTEN, None)

        session_class = self.sessionmaker.session_class
        event.listen(session_class, "after_commit", after_commit)
        event.listen(session_class, "after_soft_rollback", lambda s, _: after_rollback(s))

    async def relay_due(self) -> int:
        """One pass: lease what is due, publish or hand over each row in order, record the
        outcome. Returns how many rows were delivered."""
        async with self.sessionmaker() as session:
            token, due = await outbox.claim_due(session, self.lease)
            await session.commit()
        if not due:
            return 0
        published: list[uuid.UUID] = []
        handed: list[uuid.UUID] = []
        for message in due:
            publish = self.publishers.get(message.kind)
            try:
                if publish is not None:
                    await publish(message.payload)
                else:
                    await self.kick(message.id)
            except Exception as error:
                # Redis is unreachable: stop this pass, logged once; the rest waits for the sweep.
                left = len(due) - len(published) - len(handed)
                logger.warning(
                    "outbox_kick_failed", kind=message.kind, error=repr(error), waiting=left
                )
                break
            (handed if publish is None else published).append(message.id)
        undelivered = [m.id for m in due[len(published) + len(handed) :]]
        async with self.sessionmaker() as session:
            if published:
                await outbox.mark_published(session, published, token)
            if handed:
                redelivery = self.lease * REDELIVERY_LEASES
                await outbox.mark_dispatched(session, handed, token, redelivery)
            if undelivered:
                retry_after = timedelta(seconds=self.poll_seconds)
                await outbox.give_back(session, undelivered, token, retry_after)
            await session.commit()
        OUTBOX_RELAYED.inc(len(handed))
        return len(published) + len(handed)

    async def run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                while await self.relay_due() == outbox.RELAY_BATCH_SIZE:
                    pass
            except Exception:
                # Never let one bad pass end the relay: the next pass retries.
                logger.warning("outbox_relay_pass_failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        """Stop after a last pass, so rows committed just before shutdown are handed over.

        A pass under way is let finish: cancelled between its claim and its hand-off, it would
        leave the rows it claimed pending until their lease ran out. Both are bounded, so a hung
        database or queue cannot hold the stop; the leases cover whatever is left.
        """
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            async with asyncio.timeout(STOP_SECONDS):
                await asyncio.wait({self._task})
                await self.relay_due()
        except Exception:
            logger.warning("outbox_relay_stop_incomplete", exc_info=True)
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
