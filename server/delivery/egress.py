"""Outbound HTTP (webhook deliveries, Web Push): refuses private and loopback addresses.

URLs come from producers (webhook endpoints) and browsers (push subscriptions), so
without a guard they could make the server call its own database, Redis or a cloud
metadata service. Two checks:

- ``check_url`` when a URL is registered: http(s), a host, no credentials, and not a
  literal private address or ``localhost`` (a 422 for the caller).
- every connection: the session's socket factory sees the address actually being
  connected to, after DNS, on every redirect hop, so a public name that resolves to a
  private address (or changes to one later) is refused too.

``allow_private`` (``TASKBELL_WEBHOOK_ALLOW_PRIVATE`` / ``TASKBELL_PUSH_ALLOW_PRIVATE``)
turns both off, for receivers on the same network and for tests on loopback.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from urllib.parse import urlsplit

import aiohttp
from aiohappyeyeballs import AddrInfoType

from server.errors import Unprocessable

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


class PrivateAddress(OSError):
    """A connection to a private, loopback or otherwise non-public address was refused."""


def is_public(address: str) -> bool:
    """True for a globally routable unicast address (IPv4-mapped IPv6 is unwrapped)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, *, allow_private: bool, what: str = "url") -> str:
    """Return ``url`` when it may be called; raises ``Unprocessable`` otherwise."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        raise Unprocessable(f"{what} is not a valid URL", code="bad_url") from None
    if parts.scheme not in ("http", "https") or not host:
        raise Unprocessable(f"{what} must be an http or https URL", code="bad_url")
    if parts.username is not None or parts.password is not None:
        raise Unprocessable(f"{what} must not carry credentials", code="bad_url")
    if allow_private:
        return url
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if host.lower().rstrip(".") in _LOCAL_NAMES or (
        literal is not None and not is_public(str(literal))
    ):
        raise Unprocessable(
            f"{what} points at a private or loopback address, which this server refuses",
            code="private_address",
        )
    return url


def _guarded_socket(addr_info: AddrInfoType) -> socket.socket:
    family, type_, proto, _, sockaddr = addr_info
    if not is_public(str(sockaddr[0])):
        # errno and strerror set: aiohttp's error message shows only the strerror.
        raise PrivateAddress(
            errno.EACCES, f"refused to connect to non-public address {sockaddr[0]}"
        )
    return socket.socket(family, type_, proto)


def session(*, allow_private: bool, timeout_s: float) -> aiohttp.ClientSession:
    """An aiohttp session for outbound calls; create and close it inside the loop."""
    connector = aiohttp.TCPConnector(
        limit=64,
        limit_per_host=8,
        socket_factory=None if allow_private else _guarded_socket,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        headers={"User-Agent": "Taskbell-Webhooks/1"},
        trust_env=False,
    )
