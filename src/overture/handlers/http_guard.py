"""The ``http`` handler's SSRF guard, in the connection layer.

A host is resolved once, every address that is not public is refused unless allow-listed, and
the socket is opened to exactly an address that was checked. The name is never looked up again,
so a DNS answer that changes between check and connect (rebinding) cannot slip a private address
in; TLS still verifies the certificate for the host name.

Odd spellings of an address (``2130706433``, ``0x7f.1``, ``127.1``, ``[::ffff:7f00:1]``) need no
parser of our own: the host goes to the system's ``getaddrinfo``, which reads numeric hosts the
way ``inet_aton`` does, and the guard checks and connects to the address it returned, so the
address checked is the address the socket would have gone to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpcore
import httpx

from overture.errors import NonRetryable
from overture.handlers.http_redirects import origin

ALLOW_ENV = "OVERTURE_HTTP_ALLOWED_NETWORKS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""``(host, port) -> addresses``: how the guard looks a host up (tests inject their own)."""


HOSTNAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


def allow_entry(entry: str) -> IPNetwork | str:
    """A CIDR (a bare address is a /32 or /128) or a host name, as the guard compares it."""
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        pass
    if entry and not HOSTNAME.match(entry):
        raise ValueError(
            f"{ALLOW_ENV} entries are host names or CIDRs (e.g. 'agents.internal', "
            f"'10.0.0.0/8'), got {entry!r}"
        )
    return entry


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is on the public internet: not loopback, private, carrier-grade NAT,
    link-local (such as the cloud metadata service 169.254.169.254), site-local, multicast,
    reserved or unspecified.

    An IPv6 address that carries an IPv4 address is judged by it: mapped (``::ffff:a.b.c.d``, the
    socket goes to the IPv4 address) and NAT64 (``64:ff9b::a.b.c.d``, the gateway goes there),
    and a 6to4 address (``2002:AABB:CCDD::``) whose IPv4 address is not public is refused. The
    local-use NAT64 prefix ``64:ff9b:1::/48`` puts the IPv4 address where each network chooses,
    so it is refused whole."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or _nat64(address)
        if embedded is not None:
            return is_public(embedded)
        if address in LOCAL_NAT64 or address.is_site_local:
            return False
        if address.sixtofour is not None and not is_public(address.sixtofour):
            return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
"""RFC 6052's well-known prefix: the last 32 bits are the IPv4 address."""
LOCAL_NAT64 = ipaddress.IPv6Network("64:ff9b:1::/48")
"""RFC 8215's local-use prefix: where the IPv4 address sits depends on the network."""


def _nat64(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in NAT64 else None


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which addresses the guard lets a connection go to."""

    trusted_hosts: frozenset[str]
    """Allow-listed host names, on any port."""
    allowed_networks: tuple[IPNetwork, ...]
    trusted_origin: tuple[str, int] | None = None
    """The base URL's host and port: trusted there only, not on the host's other ports (an
    admin port beside the API). The scheme needs no checking: a socket goes to a host and port."""

    @classmethod
    def of(cls, allow: Iterable[str], base_url: str | None) -> AddressPolicy:
        """The policy for an allow-list, trusting ``base_url``'s origin (the operator chose it)."""
        entries = [allow_entry(entry) for entry in allow]
        hosts = frozenset(entry for entry in entries if isinstance(entry, str))
        networks = tuple(entry for entry in entries if not isinstance(entry, str))
        trusted = None
        if base_url is not None:
            _, host, port = origin(httpx.URL(base_url))
            trusted = (_normal_host(host), port)
        return cls(hosts, networks, trusted)

    def permits(self, host: str, port: int, address: IPAddress) -> bool:
        """Whether a connection for ``host`` and ``port`` may go to ``address``."""
        name = _normal_host(host)
        if name in self.trusted_hosts or (name, port) == self.trusted_origin:
            return True
        unwrapped = getattr(address, "ipv4_mapped", None) or address
        if any(unwrapped in network for network in self.allowed_networks):
            return True
        return is_public(address)


def _normal_host(host: str) -> str:
    return host.strip("[]").lower().rstrip(".")


class AddressBlocked(NonRetryable):
    """The SSRF guard refused to connect: the host resolved to no address it may reach."""

    def __init__(self, host: str, address: IPAddress) -> None:
        super().__init__(
            f"refused to connect to {host!r} at {address}: not a public address (allow it with "
            f"{ALLOW_ENV}=<host or CIDR>)",
            code="ssrf_blocked",
            details={"host": host, "address": str(address)},
        )


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """The addresses ``host`` resolves to, in the resolver's order (getaddrinfo, in a thread)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's connection layer with the SSRF guard: resolve, check, connect to that address."""

    def __init__(self, policy: AddressPolicy, resolve: Resolver = resolve_host) -> None:
        self._policy = policy
        self._resolve = resolve
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._lookup(host, port, timeout)
        permitted = [a for a in addresses if self._policy.permits(host, port, a)]
        if not permitted:
            raise AddressBlocked(host, addresses[0])
        failure: httpcore.ConnectError | None = None
        for address in permitted:
            try:
                # The checked address, never the name: the stream's TLS layer is still given
                # the name (httpcore passes the origin's host as server_hostname).
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as error:
                failure = error
        assert failure is not None
        raise failure

    async def _lookup(self, host: str, port: int, timeout: float | None) -> list[IPAddress]:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self._resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"looking up {host!r} took over {timeout}s") from None
        except OSError as error:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {error}") from None
        if not addresses:
            raise httpcore.ConnectError(f"{host!r} resolved to no address")
        return addresses

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.UnsupportedProtocol("the http handler does not use unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (TLS, limits, error mapping) over a ``GuardedBackend``."""

    def __init__(self, backend: GuardedBackend) -> None:
        super().__init__()
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("this httpx version has no connection pool to guard")
        # httpx offers no public way to choose the network backend, so swap the pool it built for
        # the same pool over ours. The isinstance check above makes an httpx that changes this
        # fail loudly rather than connect unguarded.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),  # honours SSL_CERT_FILE / SSL_CERT_DIR
            max_connections=100,  # httpx's default limits
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=backend,
        )
