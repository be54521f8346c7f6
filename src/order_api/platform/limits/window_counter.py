"""The general per-address limit on Redis, counted without a round trip per request.

Hand-written because `limits` makes a round trip per hit: ~150 µs of this process's CPU, more
than a product read's query. Two ways to count, one Lua script:
- a key far below its limit (its last known count plus the hits since, under half the limit)
  is allowed at once, and its hits are sent to Redis every FLUSH_SECONDS with everyone else's;
- a key near its limit, or new, or not heard of lately, waits for an exact count; requests that
  arrive while one is on its way share the next round trip, each answered in arrival order.
So a burst may pass the limit by what one process lets through in FLUSH_SECONDS, from half the
limit up; past that, every hit is counted before it is answered.
The window is `limits`' sliding window counter: the previous window's count, weighted by the
share of it still inside the last period, plus the current one's. Refused hits are not counted.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis.asyncio
from limits import RateLimitItem

# KEYS: per limited key, its current then its previous window's counter. ARGV: the limit, the
# previous window's weight, the counter lifetime, then per key the hits already let through and
# the hits asking. Returns per key the asking hits allowed and both windows' counts after them.
_COUNT_HITS = """
local limit, weight, lifetime = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local answers = {}
for i = 1, #KEYS, 2 do
  local passed, asking = tonumber(ARGV[3 + i]), tonumber(ARGV[4 + i])
  local current = tonumber(redis.call('GET', KEYS[i]) or '0') + passed
  local previous = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
  local allowed = math.max(0, math.min(asking, math.floor(limit - previous * weight - current)))
  if passed + allowed > 0 then
    current = redis.call('INCRBY', KEYS[i], passed + allowed)
    redis.call('EXPIRE', KEYS[i], lifetime)
  end
  answers[#answers + 1] = allowed
  answers[#answers + 1] = previous
  answers[#answers + 1] = current
end
return answers
"""
FLUSH_SECONDS = 0.05
# A count older than this is not trusted for an answer without a round trip.
KNOWN_FOR_SECONDS = 1.0
LOCAL_SHARE = 0.5
MAX_KEYS_PER_CALL = 500


@dataclass
class _Key:
    known: float = 0.0  # the weighted count Redis last gave
    known_at: float = -math.inf
    passed: int = 0  # let through here, not yet sent
    asking: list[asyncio.Future[float | None]] = field(default_factory=list)


class BatchedWindowCounter:
    def __init__(self, client: redis.asyncio.Redis, key_prefix: str, rate: RateLimitItem) -> None:
        self._script = client.register_script(_COUNT_HITS)
        self._key_prefix = key_prefix
        self._limit = rate.amount
        self._period = rate.get_expiry()
        self._keys: dict[str, _Key] = {}
        self._next_prune = 0.0
        self._asking: set[str] = set()
        self._counting: asyncio.Task[None] | None = None
        self._flushing: asyncio.Task[None] | None = None

    def pass_at_once(self, key: str) -> bool:
        """Let a hit of a key far below its limit through now (it is counted in the next flush);
        False when this hit must wait for an exact count (`hit`). Not a coroutine: the default
        limit is checked on every request."""
        now = time.monotonic()
        if now >= self._next_prune:
            self._prune(now)
        state = self._keys.get(key)
        if state is None:
            state = self._keys[key] = _Key()
        fresh = now - state.known_at < KNOWN_FOR_SECONDS
        if not fresh or state.known + state.passed + 1 > self._limit * LOCAL_SHARE:
            return False
        state.passed += 1
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush_while_passing())
        return True

    async def hit(self, key: str) -> float | None:
        """None when allowed; else the seconds until the window lets one more through."""
        if self.pass_at_once(key):
            return None
        state = self._keys[key]
        answer: asyncio.Future[float | None] = asyncio.get_running_loop().create_future()
        state.asking.append(answer)
        self._asking.add(key)
        if self._counting is None:
            self._counting = asyncio.create_task(self._count_while_asking())
        return await answer

    async def _count_while_asking(self) -> None:
        try:
            while self._asking:
                await self._count(list(self._asking)[:MAX_KEYS_PER_CALL])
        finally:
            self._counting = None

    async def _flush_while_passing(self) -> None:
        try:
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                passing = [key for key, state in self._keys.items() if state.passed]
                if not passing:
                    return
                for start in range(0, len(passing), MAX_KEYS_PER_CALL):
                    await self._count(passing[start : start + MAX_KEYS_PER_CALL])
        finally:
            self._flushing = None

    def _prune(self, now: float) -> None:
        """Forget addresses not heard of lately, once a second: memory stays bounded by them."""
        self._next_prune = now + KNOWN_FOR_SECONDS
        for key in [key for key, state in self._keys.items() if self._forgettable(state, now)]:
            del self._keys[key]

    def _forgettable(self, state: _Key, now: float) -> bool:
        return not (state.passed or state.asking) and now - state.known_at >= KNOWN_FOR_SECONDS

    async def _count(self, keys: list[str]) -> None:
        """One round trip for these keys: their passed hits recorded, their asking ones decided.
        On failure the asking hits get the error and the passed ones wait for the next try."""
        self._asking.difference_update(keys)
        states = [self._keys[key] for key in keys]
        batch = [(state, state.passed, state.asking) for state in states]
        for state in states:
            state.passed, state.asking = 0, []
        now = time.time()
        window = math.floor(now / self._period)
        elapsed = now - window * self._period
        weight = 1 - elapsed / self._period
        redis_keys: list[str] = []
        arguments: list[float] = [self._limit, weight, 2 * self._period]
        for key, (_, passed, asking) in zip(keys, batch, strict=True):
            redis_keys += [self._redis_key(key, window), self._redis_key(key, window - 1)]
            arguments += [passed, len(asking)]
        try:
            replies: Sequence[int] = await self._script(keys=redis_keys, args=arguments)
        except Exception as error:
            for state, passed, asking in batch:
                state.passed += passed
                state.known_at = -math.inf  # no answer without Redis until it is back
                _answer_all(asking, error)
            return
        answered_at = time.monotonic()
        for index, (state, _, asking) in enumerate(batch):
            allowed, previous, current = map(int, replies[3 * index : 3 * index + 3])
            state.known, state.known_at = previous * weight + current, answered_at
            wait = self._wait(previous, current, weight, elapsed)
            for position, answer in enumerate(asking):
                if not answer.done():
                    answer.set_result(None if position < allowed else wait)

    def _wait(self, previous: int, current: int, weight: float, elapsed: float) -> float:
        """Seconds until one more hit fits: the previous window's share fades linearly until
        the current window ends, and then the current one's does."""
        until_window_ends = self._period - elapsed
        if current + 1 > self._limit:  # the current window alone is full: wait for it to fade
            return until_window_ends + self._period * (1 - (self._limit - 1) / current)
        excess = previous * weight + current + 1 - self._limit
        return min(excess * self._period / previous, until_window_ends) if previous else 0.0

    def _redis_key(self, key: str, window: int) -> str:
        return f"{self._key_prefix}:{key}:{window}"


def _answer_all(answers: list[asyncio.Future[float | None]], error: Exception) -> None:
    for answer in answers:
        if not answer.done():
            answer.set_exception(error)
