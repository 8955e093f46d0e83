"""Which addresses the proxy may fetch a client-given URL from (images for Gemini).

A client of the listener names the URL; the proxy, not the client, connects. Without a policy
that is server-side request forgery: the proxy would read its own loopback services, the private
network it sits in and the cloud metadata service. So: http(s) only, public addresses only
(unless the config's `image-fetch` allows more), and every address a name resolves to is
checked, including IPv4 addresses hidden in IPv6 forms. The caller connects to the checked
address itself, never resolving the name a second time (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

# Cloud instance metadata: never fetched, whatever the config allows. Their names are refused
# before any resolution (no DNS query leaves for them).
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, Oracle, DigitalOcean, OpenStack
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.169.253",  # AWS VPC DNS
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS over IPv6
        "fd00:ec2::23",  # AWS Time Sync / DNS over IPv6
    )
)

# Spelled out rather than left to `ipaddress.is_global`, whose tables differ between Python
# versions (IANA special-purpose registries).
_NOT_PUBLIC = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/96",  # unspecified, loopback and the deprecated IPv4-compatible form
        "::ffff:0:0/96", "64:ff9b:1::/48", "2002::/16", "100::/64", "2001::/23", "2001:db8::/32",
        "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64, IPv4-compatible, Teredo
    client), which is what a connection to it may reach."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.teredo is not None:
        return address.teredo[1]
    return None


def is_public(address: IPAddress) -> bool:
    """Reachable on the public internet, and nothing else: not loopback, private, link-local,
    CGNAT, multicast, reserved, unspecified or documentation, in any IPv4 or IPv6 spelling."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False
        if address in _NAT64:
            # DNS64 on an IPv6-only network: the IPv4 address is where the connection goes.
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if embedded_ipv4(address) is not None:
            return False  # mapped, 6to4, IPv4-compatible, Teredo: no public image host needs them
    if (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    ):
        return False
    return not any(address in network for network in _NOT_PUBLIC if network.version == address.version)


def is_metadata(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            address = ipaddress.IPv6Address(address.compressed.split("%")[0])
        inner = embedded_ipv4(address)
        if inner is not None and inner in METADATA_ADDRESSES:
            return True
    return address in METADATA_ADDRESSES


def _ascii(host: str) -> str:
    """An internationalised host name in the IDNA form URLs are resolved and compared in."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def _host_key(host: str) -> str:
    return host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """`allow_private` lets every non-public address through (cloud metadata excepted);
    `allowed_hosts` names the exceptions: host names (`*.corp.example` for a domain's hosts),
    addresses or networks."""

    allow_private: bool = False
    allowed_hosts: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, section: object) -> FetchPolicy:
        hosts = tuple(_ascii(h) for h in getattr(section, "allowed_hosts", ()))
        return cls(bool(getattr(section, "allow_private", False)), hosts)

    def _networks(self) -> Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        for entry in self.allowed_hosts:
            try:
                yield ipaddress.ip_network(entry, strict=False)
            except ValueError:
                continue

    def _named(self, host: str) -> bool:
        host = _host_key(host)
        for entry in self.allowed_hosts:
            if entry == host or (entry.startswith("*.") and host.endswith(entry[1:])):
                return True
        return False

    def refuses_name(self, host: str) -> bool:
        """Refused before resolving: cloud metadata names."""
        return _host_key(host) in METADATA_HOSTS

    def permits(self, host: str, address: IPAddress) -> bool:
        """May the proxy connect to `address`, which `host` resolved to?"""
        if is_metadata(address) or address.is_multicast or address.is_unspecified:
            return False
        if is_public(address) or self.allow_private or self._named(host):
            return True
        return any(address.version == n.version and address in n for n in self._networks())


class RefusedAddress(Exception):
    """The host is not one the policy lets the proxy fetch from, or does not resolve: one case,
    so that the answer does not tell whether an internal name exists."""


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an address literal in any spelling the C library
    accepts, e.g. `2130706433` or `0x7f.1`, resolves to itself), without blocking the event loop."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(sockaddr[0])
        if family == socket.AF_INET6 and sockaddr[3]:  # a scope id: link-local by definition
            address = ipaddress.IPv6Address(f"{sockaddr[0].split('%')[0]}%{sockaddr[3]}")
        if address not in found:
            found.append(address)
    return found


async def checked_addresses(policy: FetchPolicy, host: str, port: int, resolver: Resolver = resolve) -> list[IPAddress]:
    """The addresses to connect to for `host`, all of them permitted, or RefusedAddress. Every
    resolved address must pass: a name that also resolves to a private address is refused,
    since the connection could go to either."""
    if not host or policy.refuses_name(host):
        raise RefusedAddress(host)
    try:
        addresses = await resolver(host, port)
    except (OSError, UnicodeError, ValueError):
        raise RefusedAddress(host) from None
    if not addresses or not all(policy.permits(host, a) for a in addresses):
        raise RefusedAddress(host)
    return addresses


__all__ = [
    "FetchPolicy",
    "IPAddress",
    "RefusedAddress",
    "checked_addresses",
    "embedded_ipv4",
    "is_metadata",
    "is_public",
    "resolve",
]
