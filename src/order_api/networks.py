"""Membership of an address in the CIDR lists of the settings (metrics peers, trusted proxies)."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv6Address, ip_address

from pydantic import IPvAnyNetwork


def address_in(address: str, networks: Iterable[IPvAnyNetwork]) -> bool:
    """Whether an address is in one of the networks; anything but an IP address is not."""
    try:
        parsed = ip_address(address)
    except ValueError:
        return False
    if isinstance(parsed, IPv6Address) and parsed.ipv4_mapped is not None:
        # A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
        parsed = parsed.ipv4_mapped
    return any(parsed in network for network in networks)
