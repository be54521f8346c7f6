"""Bounded waiting for something another task or process does; a test never asserts a duration."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

WAIT_LIMIT_SECONDS = 60.0


async def wait_until(
    condition: Callable[[], Awaitable[bool]] | Callable[[], bool],
    what: str,
    limit: float = WAIT_LIMIT_SECONDS,
) -> None:
    deadline = time.monotonic() + limit
    while True:
        outcome = condition()
        if isinstance(outcome, Awaitable):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        await asyncio.sleep(0.05)
