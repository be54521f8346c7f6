from __future__ import annotations

import pytest

from order_api.users.models import Role
from tests.accounts import Account, Shop


@pytest.fixture
async def staff(shop: Shop) -> Account:
    return await shop.account(Role.STAFF)


@pytest.fixture
async def customer(shop: Shop) -> Account:
    return await shop.account(Role.CUSTOMER)
