"""Password hashing (Argon2id, pwdlib) and tokens: HS256 access JWTs, opaque refresh tokens."""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

import anyio.to_thread
import jwt
from fastapi import Depends
from fastapi.requests import HTTPConnection
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from order_api.platform.errors import TooManyRequests, Unauthorized
from order_api.platform.limits.rules import REJECTIONS, address_key
from order_api.platform.telemetry.logs import PASSWORD_CHECKS

MAX_NUMERIC_DATE = 10**11  # the year 5138: later claims are nonsense, and huge ones overflow
# Each running hash holds its memory cost in RAM; a few at a time bound that and the CPU it takes.
HASHING_CONCURRENCY = 4
_Result = TypeVar("_Result")


@dataclass(frozen=True)
class _CallerLine:
    places: anyio.Semaphore  # the check running plus those waiting behind it
    running: anyio.Lock


class HashingTurns:
    """Turns at the hashing threads, per caller: one check running and a few waiting; any more
    is a 429 at once, before a hash. So a caller flooding checks holds one of the threads, and
    everyone else's checks do not queue behind its flood. Process-local, as the CPU it shares.
    """

    def __init__(self, waiting_per_caller: int) -> None:
        self._places = waiting_per_caller + 1
        self._lines: dict[str, _CallerLine] = {}

    def __len__(self) -> int:
        """Callers with a check running or waiting (idle ones are forgotten)."""
        return len(self._lines)

    @asynccontextmanager
    async def turn(self, caller: str) -> AsyncIterator[None]:
        line = self._lines.get(caller)
        if line is None:
            places = anyio.Semaphore(self._places, max_value=self._places)
            line = self._lines[caller] = _CallerLine(places, anyio.Lock())
        try:
            line.places.acquire_nowait()
        except anyio.WouldBlock:
            REJECTIONS.labels(limit="password_hashing").inc()
            raise TooManyRequests(
                "Too many password checks from this address at once. Retry after 1 second.",
                headers={"Retry-After": "1"},
            ) from None
        try:
            async with line.running:
                yield
        finally:
            line.places.release()
            if line.places.value == self._places and self._lines.get(caller) is line:
                del self._lines[caller]  # nothing running or waiting: the memory is bounded


class Passwords:
    """Hashes and verifies in worker threads, so the event loop keeps serving while Argon2 runs.

    A check made for a caller (its client address) takes its turn in `HashingTurns` first;
    one made for nobody (the command line) or with `fair_per_caller=False` goes straight on.
    """

    # A caller's checks past these would wait for nothing but its own: refused at once instead.
    CHECKS_WAITING_PER_CALLER = 8

    def __init__(self, memory_kib: int, iterations: int, *, fair_per_caller: bool = True) -> None:
        hasher = Argon2Hasher(time_cost=iterations, memory_cost=memory_kib, parallelism=1)
        self._hash = PasswordHash((hasher,))
        self._limiter = anyio.CapacityLimiter(HASHING_CONCURRENCY)
        self._turns = HashingTurns(self.CHECKS_WAITING_PER_CALLER) if fair_per_caller else None
        # Verified instead of a real hash when the account is unknown: both cost one Argon2 run.
        self._dummy_hash = self._hash.hash(secrets.token_urlsafe(16))

    @property
    def callers_in_line(self) -> int:
        return len(self._turns) if self._turns is not None else 0

    async def hash(self, password: str, *, caller: str | None = None) -> str:
        return await self._in_thread(caller, functools.partial(self._hash.hash, password))

    async def verify(
        self, password: str, stored_hash: str | None, *, caller: str | None = None
    ) -> tuple[bool, str | None]:
        """Whether `password` matches, and a new hash to store when the cost settings changed.

        With no stored hash the dummy hash is verified, so an unknown account takes as long.
        """
        target = stored_hash or self._dummy_hash
        check = functools.partial(self._hash.verify_and_update, password, target)
        matches, new_hash = await self._in_thread(caller, check)
        PASSWORD_CHECKS.labels(against="account" if stored_hash else "dummy").inc()
        if stored_hash is None:
            return False, None
        return matches, new_hash if matches else None

    async def _in_thread(self, caller: str | None, work: Callable[[], _Result]) -> _Result:
        if caller is None or self._turns is None:
            return await anyio.to_thread.run_sync(work, limiter=self._limiter)
        async with self._turns.turn(address_key(caller)):
            return await anyio.to_thread.run_sync(work, limiter=self._limiter)


class InvalidToken(Unauthorized):
    code, title = "invalid_token", "Invalid token"
    default_detail = "The access token is malformed, expired or revoked; log in again."

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, error="invalid_token")


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    # Seconds since the epoch with microseconds, compared with the user's `tokens_valid_after`.
    issued_at: float
    expires_at: float


@dataclass(frozen=True)
class RefreshToken:
    token: str
    token_hash: str


class Tokens:
    """Issues and checks access tokens; makes refresh tokens and the hashes stored for them."""

    ALGORITHM = "HS256"  # hard-coded allow-list: never taken from the token's header
    ISSUER = AUDIENCE = "order-api"
    TYPE = "access"
    LEEWAY_SECONDS = 5  # clock skew between the processes that sign and verify
    MAX_TOKEN_LENGTH = 4096  # ours are ~300 bytes; anything far longer is not worth decoding
    # Tokens verified lately, kept with their claims: ~300 bytes each, the oldest dropped first.
    VERIFIED_CACHE_SIZE = 4096

    def __init__(
        self,
        secret: str,
        access_lifetime: timedelta,
        refresh_lifetime: timedelta,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = refresh_lifetime
        self._clock = clock
        self._verified: dict[str, AccessClaims] = {}

    def issue_access(self, user_id: uuid.UUID, now: datetime) -> AccessToken:
        # A fractional `iat` (RFC 7519 NumericDate allows it) orders a token against a revocation
        # made in the same second.
        issued_at = now.timestamp()
        lifetime = int(self.access_lifetime.total_seconds())
        claims = {
            "sub": str(user_id),
            "type": self.TYPE,
            "iss": self.ISSUER,
            "aud": self.AUDIENCE,
            "iat": issued_at,
            "exp": issued_at + lifetime,
        }
        token = jwt.encode(claims, self._secret, algorithm=self.ALGORITHM)
        return AccessToken(token=token, expires_in=lifetime)

    def verify_access(self, token: str) -> AccessClaims:
        """The claims of a valid access token; InvalidToken (401) for anything else.

        A token verified before is not decoded again (PyJWT's decode took ~77 µs here, measured):
        the same string has the same signature and claims, and only its expiry can change.
        Revocation is not cached here; the caller checks it against the user on every request.
        """
        claims = self._verified.get(token)
        if claims is None:
            claims = self._decode_access(token)
            if len(self._verified) >= self.VERIFIED_CACHE_SIZE:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = claims
        # PyJWT's own rule, kept for a cached token: expired once `exp` plus the leeway has passed.
        if self._clock() >= claims.expires_at + self.LEEWAY_SECONDS:
            self._verified.pop(token, None)
            raise InvalidToken()
        return claims

    def _decode_access(self, token: str) -> AccessClaims:
        if len(token) > self.MAX_TOKEN_LENGTH:
            raise InvalidToken()
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[self.ALGORITHM],
                audience=self.AUDIENCE,
                issuer=[self.ISSUER],
                leeway=self.LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "sub", "type", "iss", "aud"]},
            )
        except jwt.PyJWTError:
            raise InvalidToken() from None
        # PyJWT accepts `exp: "9999999999"`, a string; we accept numbers only.
        if claims["type"] != self.TYPE or not (_is_time(claims["exp"]) and _is_time(claims["iat"])):
            raise InvalidToken()
        try:
            user_id = uuid.UUID(claims["sub"])
        except (TypeError, ValueError):
            raise InvalidToken() from None
        if str(user_id) != claims["sub"]:
            raise InvalidToken()  # only the spelling we issue: no braces, urn: prefix or capitals
        return AccessClaims(
            user_id=user_id, issued_at=float(claims["iat"]), expires_at=float(claims["exp"])
        )

    @staticmethod
    def new_refresh() -> RefreshToken:
        token = secrets.token_urlsafe(32)  # 256 bits from the OS CSPRNG
        return RefreshToken(token=token, token_hash=hash_refresh_token(token))


def hash_refresh_token(token: str) -> str:
    """SHA-256 is enough for 256 random bits: the table never holds a usable token."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _is_time(value: object) -> bool:
    """A NumericDate we can do arithmetic on: a number, not a bool, NaN, infinity or 10**400."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0 <= value < MAX_NUMERIC_DATE


async def app_passwords(connection: HTTPConnection) -> Passwords:
    passwords: Passwords = connection.app.state.passwords
    return passwords


async def app_tokens(connection: HTTPConnection) -> Tokens:
    tokens: Tokens = connection.app.state.tokens
    return tokens


PasswordsDep = Annotated[Passwords, Depends(app_passwords)]
TokensDep = Annotated[Tokens, Depends(app_tokens)]
