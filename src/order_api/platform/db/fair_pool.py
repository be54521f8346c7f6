"""A connection pool that serves waiting requests first come, first served.

SQLAlchemy's async queue pool lets a newcomer take a returned connection ahead of those already
waiting, who then wait again at the back: with 64 clients on 10 connections, p99 went to 1.2 s
with timeouts. Checkouts here queue in a FIFO semaphore of the pool's capacity first,
bounded by the pool timeout like the pool's own wait (a 503 `Retry-After` for the request).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import exc
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry
from sqlalchemy.util import await_

# SQLAlchemy keeps its pools' loggers at WARNING; this subclass logs under our package's name.
logging.getLogger(__name__).setLevel(logging.WARNING)


class FairAsyncQueuePool(AsyncAdaptedQueuePool):
    def __init__(
        self,
        creator: Any,
        pool_size: int = 5,
        max_overflow: int = 10,
        timeout: float = 30.0,
        **keywords: Any,
    ) -> None:
        super().__init__(
            creator, pool_size=pool_size, max_overflow=max_overflow, timeout=timeout, **keywords
        )
        self._turns = asyncio.Semaphore(pool_size + max(max_overflow, 0))
        self._wait_seconds = timeout

    def _do_get(self) -> ConnectionPoolEntry:
        try:
            await_(self._take_turn())
        except TimeoutError:
            raise exc.TimeoutError(
                f"no connection free after {self._wait_seconds:g} s (pool of {self.size()})"
            ) from None
        try:
            return super()._do_get()
        except BaseException:
            self._turns.release()
            raise

    async def _take_turn(self) -> None:
        if not self._turns.locked():  # free, and nobody queued ahead: taken without a timer
            await self._turns.acquire()
            return
        # asyncio.timeout, not wait_for: no task per checkout.
        async with asyncio.timeout(self._wait_seconds):
            await self._turns.acquire()

    def _do_return_conn(self, record: ConnectionPoolEntry) -> None:
        try:
            super()._do_return_conn(record)
        finally:
            self._turns.release()
