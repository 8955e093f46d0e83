"""Who may reach the credential pool: the exposure rule for the proxy's entrances.

Both entrances serve the pool: the API listener, and mitmproxy's regular proxy, which answers
vendor CLIs pointed at it with HTTPS_PROXY. On loopback only programs on this machine reach
them. Beyond loopback (0.0.0.0, ::, a LAN address, a host name) anyone who reaches the port
could spend the pool, so there `api-keys` are required: the listener asks for one as always,
and the interception proxy asks for one as proxy credentials
(`HTTPS_PROXY=http://cliproxy:KEY@host:port`; the user name is not checked).
"""

from __future__ import annotations

import binascii
import hmac
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

LOOPBACK = "127.0.0.1"
# The user name `cliproxy env` prints; any other is accepted as well.
PROXY_USER = "cliproxy"
OPT_OUT_KEY = "allow-unauthenticated-exposure"


def is_loopback(host: str) -> bool:
    """Whether a server bound to `host` is reachable from this machine only. "" (every
    interface) and names other than localhost are not: a name may resolve to anything."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 peer
    return address.is_loopback


@dataclass(frozen=True)
class Entrance:
    """A server that serves the pool: what it is, and where it listens ("" is every interface)."""

    name: str
    host: str
    port: int

    @property
    def exposed(self) -> bool:
        return not is_loopback(self.host)

    @property
    def address(self) -> str:
        return hostport(self.host or "*", self.port)


def exposure_problem(entrances: Sequence[Entrance], has_keys: bool, opt_out: bool) -> str | None:
    """Why these entrances may not serve as configured (`api-keys: ...`), or None."""
    exposed = [e for e in entrances if e.exposed]
    if not exposed or has_keys or opt_out:
        return None
    where = " and ".join(f"{e.name} on {e.address}" for e in exposed)
    listens, it = ("listen", "them") if len(exposed) > 1 else ("listens", "it")
    return (
        f"api-keys: required, because {where} {listens} beyond loopback, where anyone who "
        f"reaches {it} would use the credential pool; add api-keys (or set CLI_PROXY_API_KEY), "
        f"listen on 127.0.0.1, or set {OPT_OUT_KEY}: true"
    )


def exposure_warning(entrances: Sequence[Entrance], has_keys: bool, opt_out: bool) -> str | None:
    """The warning for an exposure the config allows without keys, or None."""
    exposed = [e for e in entrances if e.exposed]
    if not exposed or has_keys or not opt_out:
        return None
    where = " and ".join(f"{e.name} on {e.address}" for e in exposed)
    serves = "serve" if len(exposed) > 1 else "serves"
    return (
        f"WARNING: {where} {serves} the credential pool to anyone who reaches it, without any "
        f"key ({OPT_OUT_KEY}: true). Add api-keys to protect it."
    )


def key_matches(sent: str, keys: Iterable[str]) -> bool:
    """Whether `sent` is one of `keys`, comparing with every key in constant time (no early
    exit that would tell which key, or how much of it, matched)."""
    given = sent.encode()
    return sum(hmac.compare_digest(given, k.encode()) for k in keys) > 0


def basic_password(header: str) -> str | None:
    """The password of an HTTP Basic `Proxy-Authorization` value, or None."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = binascii.a2b_base64(token.strip().encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    _user, sep, password = decoded.decode("utf-8", "replace").partition(":")
    return password if sep else None


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def proxy_url(host: str, port: int, key: str | None = None) -> str:
    """The HTTPS_PROXY value for the interception proxy, with `key` as its credentials."""
    if key is None:
        return f"http://{hostport(host, port)}"
    # Percent-encoded: a key may hold any character, and clients decode the user info.
    return f"http://{PROXY_USER}:{quote(key, safe='')}@{hostport(host, port)}"
