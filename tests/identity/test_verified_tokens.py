"""Access tokens verified before are not decoded again, and lose nothing of the checks for it."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from order_api.platform.security import InvalidToken, Tokens
from tests.support import TEST_SECRET_KEY
from tests.tokens import claims_for, mint


class Clock:
    """A clock the test moves; PyJWT still checks a token it decodes against the real one."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def tokens(clock: Clock) -> Tokens:
    return Tokens(TEST_SECRET_KEY, timedelta(minutes=15), timedelta(days=1), clock=clock)


def test_a_verified_token_is_refused_once_it_expires() -> None:
    clock = Clock()
    checker = tokens(clock)
    user_id = uuid.uuid4()
    token = checker.issue_access(user_id, datetime.now(UTC)).token
    claims = checker.verify_access(token)
    assert claims.user_id == user_id
    clock.now = claims.expires_at + Tokens.LEEWAY_SECONDS - 0.5
    assert checker.verify_access(token) == claims  # within the leeway, as PyJWT has it
    clock.now = claims.expires_at + Tokens.LEEWAY_SECONDS
    with pytest.raises(InvalidToken):
        checker.verify_access(token)
    with pytest.raises(InvalidToken):  # dropped, decoded again: still refused
        checker.verify_access(token)


def test_a_refused_token_is_refused_again_and_a_forgery_of_a_verified_one_too() -> None:
    checker = tokens(Clock())
    user_id = uuid.uuid4()
    good = mint(claims_for(user_id))
    assert checker.verify_access(good).user_id == user_id
    forged = mint(claims_for(user_id), key="another-key-" + "x" * 40)
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    for bad in (forged, tampered, forged, tampered):
        with pytest.raises(InvalidToken):
            checker.verify_access(bad)
    assert checker.verify_access(good).user_id == user_id


def test_the_cache_is_bounded_and_an_evicted_token_still_verifies() -> None:
    checker = tokens(Clock())
    first = mint(claims_for(uuid.uuid4()))
    first_claims = checker.verify_access(first)
    for _ in range(Tokens.VERIFIED_CACHE_SIZE):
        checker.verify_access(mint(claims_for(uuid.uuid4())))
    assert len(checker._verified) == Tokens.VERIFIED_CACHE_SIZE
    assert first not in checker._verified
    assert checker.verify_access(first) == first_claims
