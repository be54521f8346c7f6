"""Rate limits (SPEC §2 Operations, §5.6): one `RateLimits` per process, on Redis in production so
every API process counts against the same windows, in memory in embedded mode.

While Redis is unreachable the general and per-route limits let requests through (counted), and
the login and registration limits count in this process instead: brute force is never unlimited.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_network

import redis.asyncio
import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import (
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.errors import StorageError
from prometheus_client import Counter
from redis.exceptions import RedisError

from order_api.config import Settings
from order_api.platform.adapters.redis_connection import redis_pool
from order_api.platform.errors import TooManyRequests
from order_api.platform.fields import normalise_email
from order_api.platform.limits.window_counter import BatchedWindowCounter
from order_api.platform.networks import plain_address

logger = structlog.get_logger(__name__)

REJECTIONS = Counter(
    "order_api_rate_limit_rejections", "Requests refused with 429, by limit.", ["limit"]
)
FAIL_OPENS = Counter(
    "order_api_rate_limit_fail_opens",
    "Requests let through unchecked because the limit's storage (Redis) was unreachable.",
    ["limit"],
)
FALLBACKS = Counter(
    "order_api_rate_limit_fallbacks",
    "Requests counted by this process alone because Redis was unreachable (login, registration).",
    ["limit"],
)
# After a storage error, Redis is left alone this long: a hung server costs one timeout, not one
# per request.
STORAGE_RETRY_SECONDS = 5.0
_STORAGE_ERRORS = (RedisError, StorageError, OSError, TimeoutError)


@dataclass(frozen=True)
class Rule:
    """One limit: its name (metric label and key part), its rate, and what to do without Redis."""

    name: str
    rate: RateLimitItem
    detail: str
    # Exact windows for the few, sensitive counts; a cheap two-counter estimate for the rest.
    exact: bool = True
    # Without Redis: count in this process (True) or let the request through (False).
    in_process_fallback: bool = False


def _rules(settings: Settings) -> dict[str, Rule]:
    login = "Too many login attempts."
    rules = (
        Rule("default", parse(settings.rate_limit_default), "Too many requests.", exact=False),
        Rule(
            "login_ip",
            parse(settings.rate_limit_login_per_ip),
            login,
            in_process_fallback=True,
        ),
        Rule(
            "login_account",
            parse(settings.rate_limit_login_per_account),
            login,
            in_process_fallback=True,
        ),
        Rule(
            "registration_ip",
            parse(settings.rate_limit_registration_per_ip),
            "Too many registrations from this address.",
            in_process_fallback=True,
        ),
        Rule("orders_user", parse(settings.rate_limit_orders_per_user), "Too many orders."),
        # Fails open without Redis, like the default limit: the stream's socket caps still hold.
        Rule(
            "websocket_ip",
            parse(settings.rate_limit_websocket_per_ip),
            "Too many stream handshakes from this address.",
            exact=False,
        ),
    )
    return {rule.name: rule for rule in rules}


class _Counting:
    """A storage with one `limits` strategy per rule, but those counted in batches."""

    def __init__(
        self,
        storage: Storage,
        rules: dict[str, Rule],
        batched: dict[str, BatchedWindowCounter] | None = None,
    ) -> None:
        self.batched = batched or {}
        self.limiters: dict[str, RateLimiter] = {
            name: (MovingWindowRateLimiter if rule.exact else SlidingWindowCounterRateLimiter)(
                storage
            )
            for name, rule in rules.items()
            if name not in self.batched
        }

    async def hit(self, rule: Rule, key: str) -> float | None:
        """None when allowed; else the seconds until the window lets one more through."""
        if rule.name in self.batched:
            return await self.batched[rule.name].hit(key)
        limiter = self.limiters[rule.name]
        if await limiter.hit(rule.rate, rule.name, key):
            return None
        stats = await limiter.get_window_stats(rule.rate, rule.name, key)
        return stats.reset_time - time.time()


class RateLimits:
    """Every limit of SPEC §2, checked by name; `enabled=False` checks nothing."""

    def __init__(
        self,
        rules: dict[str, Rule],
        shared: Storage,
        *,
        in_process: Storage | None = None,
        batched: dict[str, BatchedWindowCounter] | None = None,
        enabled: bool = True,
        pool: redis.asyncio.ConnectionPool | None = None,
    ) -> None:
        self.enabled = enabled
        self.rules = rules
        self._shared = _Counting(shared, rules, batched)
        # Only a shared (Redis) storage can fail; memory is its own fallback.
        self._fallback = _Counting(in_process, rules) if in_process is not None else None
        self._shared_down_until = 0.0
        self._probing = False
        self._pool = pool
        # Looked up once: the default limit is asked on every request.
        default = self._shared.batched.get("default")
        self._pass_default_at_once = default.pass_at_once if default is not None else None

    @classmethod
    def from_settings(
        cls, settings: Settings, redis_client: redis.asyncio.Redis | None
    ) -> RateLimits:
        rules = _rules(settings)
        enabled = settings.rate_limit_enabled
        if redis_client is None:
            return cls(rules, MemoryStorage(), enabled=enabled)
        if settings.redis_url is None:
            raise ValueError("rate limits on Redis need REDIS_URL")
        key_prefix = f"{settings.redis_prefix}:limits"
        # The storage's own pool, with the app client's bounds and retry; `aclose` closes it.
        pool = redis_pool(settings.redis_url, settings)
        shared = RedisStorage(
            # The scheme picks the client library; the pool holds the address.
            "async+redis://",
            implementation="redispy",
            key_prefix=key_prefix,
            # Documented by limits, though its options are typed as scalars only.
            connection_pool=pool,  # type: ignore[arg-type]
        )
        # Every request counts against the default limit: its round trips are shared.
        default = BatchedWindowCounter(redis_client, f"{key_prefix}:default", rules["default"].rate)
        batched = {"default": default}
        return cls(
            rules, shared, in_process=MemoryStorage(), batched=batched, enabled=enabled, pool=pool
        )

    async def aclose(self) -> None:
        """Close the shared storage's connections (none in embedded mode)."""
        if self._pool is not None:
            await self._pool.aclose()

    def request_passes_at_once(self, client: str) -> bool:
        """The general limit, far below it and with Redis answering: counted, and let through
        without a round trip or an await (it is checked on every request). False: ask
        `check_request`, which counts it exactly."""
        if not self.enabled:
            return True
        pass_at_once = self._pass_default_at_once
        return (
            pass_at_once is not None
            and self._shared_down_until == 0.0
            and pass_at_once(address_key(client))
        )

    async def check_request(self, client: str) -> None:
        # A batched rule's own hit tries the local pass first: no need to ask here again.
        await self._hit("default", address_key(client))

    async def check_login(self, client: str, email: str) -> None:
        """A login, or any other check of the account's password: they spend one budget."""
        # The address first: a sprayer out of attempts cannot spend the accounts' budgets.
        await self._hit("login_ip", address_key(client))
        await self._hit("login_account", account_key(email))

    async def check_registration(self, client: str) -> None:
        await self._hit("registration_ip", address_key(client))

    async def check_order(self, user_id: str) -> None:
        await self._hit("orders_user", user_id)

    async def check_websocket(self, client: str) -> None:
        """An order stream handshake, counted before the token is looked at."""
        await self._hit("websocket_ip", address_key(client))

    async def _hit(self, name: str, key: str) -> None:
        if not self.enabled:
            return
        rule = self.rules[name]
        wait = await self._hit_shared(rule, key)
        if wait is not None:
            REJECTIONS.labels(limit=rule.name).inc()
            retry_after = str(max(1, math.ceil(wait)))
            raise TooManyRequests(
                f"{rule.detail} Retry after {retry_after} seconds.",
                headers={"Retry-After": retry_after},
            )

    async def _hit_shared(self, rule: Rule, key: str) -> float | None:
        if self._fallback is None or self._shared_down_until == 0.0:
            return await self._hit_shared_or_fall_back(rule, key)
        if not self._probing and time.monotonic() >= self._shared_down_until:
            # One request at a time finds out whether Redis is back; the others do not wait on it.
            self._probing = True
            try:
                return await self._hit_shared_or_fall_back(rule, key)
            finally:
                self._probing = False
        return await self._without_shared(rule, key)

    async def _hit_shared_or_fall_back(self, rule: Rule, key: str) -> float | None:
        try:
            wait = await self._shared.hit(rule, key)
        except _STORAGE_ERRORS as error:
            if self._fallback is None:
                raise
            self._shared_failed(error)
            return await self._without_shared(rule, key)
        self._shared_answered()
        return wait

    async def _without_shared(self, rule: Rule, key: str) -> float | None:
        if rule.in_process_fallback and self._fallback is not None:
            FALLBACKS.labels(limit=rule.name).inc()
            return await self._fallback.hit(rule, key)
        FAIL_OPENS.labels(limit=rule.name).inc()
        return None

    def _shared_failed(self, error: BaseException) -> None:
        if self._shared_down_until == 0.0:
            # Once per outage, not once per request.
            logger.warning("rate_limit_storage_unreachable", error=repr(error))
        self._shared_down_until = time.monotonic() + STORAGE_RETRY_SECONDS

    def _shared_answered(self) -> None:
        if self._shared_down_until != 0.0:
            logger.info("rate_limit_storage_back")
            self._shared_down_until = 0.0


@functools.lru_cache(maxsize=4096)
def address_key(address: str) -> str:
    """The address's key in the limiter: an IPv6 client is its /64 (one subscriber's usual
    allocation, so it cannot rotate through addresses), an IPv4-mapped one its IPv4 address."""
    parsed = plain_address(address)
    if parsed is None:
        return address
    if isinstance(parsed, IPv6Address):
        return str(ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def account_key(email: str) -> str:
    """The account's key in the limiter: a digest, so Redis holds no e-mail addresses."""
    try:
        normalised = normalise_email(email)
    except ValueError:
        normalised = email.strip().lower()
    return hashlib.sha256(normalised.encode()).hexdigest()[:32]
