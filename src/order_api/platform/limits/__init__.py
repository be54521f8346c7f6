"""The rate-limit door: every limit by name (on Redis or in memory), and who the client is. Other
packages import these names from here only."""

from order_api.platform.limits.clients import (
    ClientAddressDep,
    Networks,
    RateLimitsDep,
    client_address,
    limited_address,
)
from order_api.platform.limits.rules import REJECTIONS, RateLimits, address_key

__all__ = [
    "REJECTIONS",
    "ClientAddressDep",
    "Networks",
    "RateLimits",
    "RateLimitsDep",
    "address_key",
    "client_address",
    "limited_address",
]
