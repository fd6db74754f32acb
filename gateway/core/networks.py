"""Kinds of IP address, by name: what the allow-lists of the gateway speak.

"public" (globally routable unicast), "private" (RFC 1918, RFC 6598 100.64.0.0/10,
fc00::/7) and "loopback" (127.0.0.0/8, ::1). Link-local (169.254.0.0/16, fe80::/10),
multicast, unspecified and other special-purpose addresses belong to none of them.
IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) and NAT64 addresses (64:ff9b::a.b.c.d) are
judged as the IPv4 address they carry. Used by the upstream allow-list
(gateway.upstream.allowlist) and by who may read /metrics (`NetworkAllowList`)."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import Final

IPAddress = IPv4Address | IPv6Address


def _v4(*cidrs: str) -> tuple[IPv4Network, ...]:
    return tuple(IPv4Network(c) for c in cidrs)


def _v6(*cidrs: str) -> tuple[IPv6Network, ...]:
    return tuple(IPv6Network(c) for c in cidrs)


LOOPBACK_V4: Final = _v4("127.0.0.0/8")
LOOPBACK_V6: Final = _v6("::1/128")
PRIVATE_V4: Final = _v4("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
PRIVATE_V6: Final = _v6("fc00::/7")
LINK_LOCAL_V4: Final = _v4("169.254.0.0/16")
LINK_LOCAL_V6: Final = _v6("fe80::/10")


# Not globally routable (IANA special-purpose registries), whatever Python version's
# `is_global` says: the table is spelled out so the answer never changes under us.
NOT_PUBLIC_V4: Final = _v4(
    "0.0.0.0/8",  # "this network", unspecified
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # documentation
    "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
    "192.168.0.0/16",
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # documentation
    "203.0.113.0/24",  # documentation
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and 255.255.255.255 broadcast
)


# Global unicast IPv6 is 2000::/3; inside it, these are not globally routable.
GLOBAL_UNICAST_V6: Final = IPv6Network("2000::/3")
NOT_PUBLIC_V6: Final = _v6(
    "2001::/23",  # IETF protocol assignments (Teredo, benchmarking, ORCHID)
    "2001:db8::/32",  # documentation
    "2002::/16",  # 6to4
    "3fff::/20",  # documentation
)
NAT64_V6: Final = IPv6Network("64:ff9b::/96")
METADATA: Final = frozenset({IPv4Address("169.254.169.254"), IPv6Address("fd00:ec2::254")})
NAMED: Final[dict[str, tuple[tuple[IPv4Network, ...], tuple[IPv6Network, ...]]]] = {
    "loopback": (LOOPBACK_V4, LOOPBACK_V6),
    "private": (PRIVATE_V4, PRIVATE_V6),
    "public": ((), ()),  # judged by is_public, not by a list
}


def unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address an IPv4-mapped or NAT64 IPv6 address stands for, else `ip`."""
    if isinstance(ip, IPv6Address):
        mapped = ip.ipv4_mapped
        if mapped is not None:
            return mapped
        if ip in NAT64_V6:
            return IPv4Address(int(ip) & 0xFFFF_FFFF)
    return ip


def is_public(ip: IPAddress) -> bool:
    if isinstance(ip, IPv4Address):
        return not any(ip in n for n in NOT_PUBLIC_V4)
    return ip in GLOBAL_UNICAST_V6 and not any(ip in n for n in NOT_PUBLIC_V6)


def describe(ip: IPAddress) -> str:
    """What kind of address `ip` is, in words, for messages."""
    ip = unwrap(ip)
    if ip in METADATA:
        return "link-local, the cloud metadata service"
    v4 = isinstance(ip, IPv4Address)
    if ip.is_unspecified or (v4 and ip in IPv4Network("0.0.0.0/8")):
        return "unspecified"
    if any(ip in n for n in (LOOPBACK_V4 if v4 else LOOPBACK_V6)):
        return "loopback"
    if any(ip in n for n in (LINK_LOCAL_V4 if v4 else LINK_LOCAL_V6)):
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if any(ip in n for n in (PRIVATE_V4 if v4 else PRIVATE_V6)):
        return "private"
    if is_public(ip):
        return "public"
    return "reserved"


def host_network(ip: IPAddress) -> str:
    return f"{ip}/{ip.max_prefixlen}"


def numeric_ipv4(host: str) -> IPv4Address | None:
    """The address a legacy numeric IPv4 form (127.1, 0x7f000001, 2130706433) means."""
    if not host or not all(c in "0123456789abcdefABCDEFxX." for c in host):
        return None
    try:
        return IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


class NetworkAllowList:
    """Who may read /metrics: CIDRs and the names "loopback" and "private"."""

    def __init__(self, entries: Iterable[str]) -> None:
        networks: list[IPv4Network | IPv6Network] = []
        for entry in entries:
            name = entry.strip().lower()
            if name in NAMED and name != "public":
                networks += [*NAMED[name][0], *NAMED[name][1]]
                continue
            try:
                networks.append(ip_network(entry.strip(), strict=True))
            except ValueError as e:
                raise ValueError(
                    f"LGSP_METRICS_ALLOWED_NETWORKS: {entry!r} is neither loopback, private "
                    f"nor a CIDR network ({e})"
                ) from None
        self._networks = tuple(networks)

    def allows(self, remote: str | None) -> bool:
        if not remote:
            return False
        try:
            ip: IPv4Address | IPv6Address = ip_address(remote)
        except ValueError:
            return False
        if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in n for n in self._networks)
