"""Membership of an address in the CIDR lists of the settings (metrics peers, trusted proxies)."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address, ip_address

from pydantic import IPvAnyNetwork


def plain_address(address: str) -> IPv4Address | IPv6Address | None:
    """The address as an IP address, an IPv4-mapped one as its IPv4 form; None if it is none."""
    try:
        parsed = ip_address(address)
    except ValueError:
        return None
    if isinstance(parsed, IPv6Address) and parsed.ipv4_mapped is not None:
        # A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
        return parsed.ipv4_mapped
    return parsed


def address_in(address: str, networks: Iterable[IPvAnyNetwork]) -> bool:
    """Whether an address is in one of the networks; anything but an IP address is not."""
    parsed = plain_address(address)
    return parsed is not None and any(parsed in network for network in networks)
