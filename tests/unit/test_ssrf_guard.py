"""The SSRF guard's address checks, without connecting: which addresses are public, how odd
spellings of an address are read (as the system's resolver reads them, ``inet_aton``), and what
the allow-list lets through."""

from __future__ import annotations

import asyncio
import socket
from ipaddress import IPv4Address, ip_address

import httpx
import pytest

from overture.handlers.http import HttpSettings
from overture.handlers.http_guard import AddressPolicy, allow_entry, is_public, resolve_host

NOT_PUBLIC = [
    "127.0.0.1", "127.9.9.9", "10.0.0.1", "10.255.255.254", "172.16.0.1", "172.31.255.254",
    "192.168.1.1", "100.64.0.1", "100.127.255.254", "169.254.169.254", "0.0.0.0", "224.0.0.1",
    "255.255.255.255", "240.0.0.1", "192.0.2.1",
    "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "fec0::1", "ff02::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:7f00:1", "::ffff:169.254.169.254", "::ffff:10.0.0.1",
    "::127.0.0.1",  # IPv4-compatible (deprecated)
    "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::a9fe:a9fe",  # NAT64 of private addresses
    "64:ff9b:1::7f00:1", "64:ff9b:1::808:808",  # local-use NAT64: refused whole
    "2002:7f00:1::", "2002:a00:1::1", "2002:a9fe:a9fe::",  # 6to4 of private addresses
    "2001::1",  # Teredo
]  # fmt: skip


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_addresses_that_are_not_public(address: str) -> None:
    assert not is_public(ip_address(address))
    assert not AddressPolicy.of((), None).permits("any.example", 80, ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8, what DNS64 answers on an IPv6-only network
        "2002:808:808::1",  # 6to4 of 8.8.8.8
    ],
)
def test_public_addresses(address: str) -> None:
    assert is_public(ip_address(address))


# --- odd spellings of loopback -----------------------------------------------------------------

LOOPBACK_SPELLINGS = [
    ("2130706433", "127.0.0.1"),  # decimal
    ("0x7f000001", "127.0.0.1"),  # hex
    ("0x7f.0.0.1", "127.0.0.1"),
    ("0x7f.0x0.0x0.0x1", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),  # octal
    ("127.1", "127.0.0.1"),  # short forms
    ("127.0.1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0", "0.0.0.0"),
    ("[::1]", "::1"),
    ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
    ("[::ffff:7f00:1]", "::ffff:127.0.0.1"),
    ("[0:0:0:0:0:ffff:127.0.0.1]", "::ffff:127.0.0.1"),
    ("[64:ff9b::7f00:1]", "64:ff9b::7f00:1"),
    ("[64:ff9b:1::7f00:1]", "64:ff9b:1::7f00:1"),
    ("[2002:7f00:1::]", "2002:7f00:1::"),
    ("localhost", "127.0.0.1"),  # /etc/hosts
]


@pytest.mark.parametrize(("spelled", "address"), LOOPBACK_SPELLINGS)
def test_an_odd_spelling_is_read_as_the_system_reads_it_and_refused(
    spelled: str, address: str
) -> None:
    host = httpx.URL(f"http://{spelled}:8000/").host  # what the guard is given
    resolved = asyncio.run(resolve_host(host, 8000))
    assert ip_address(address) in resolved
    if "[" not in spelled and spelled != "localhost":
        assert resolved == [IPv4Address(socket.inet_aton(spelled))]  # inet_aton's reading
    policy = AddressPolicy.of((), None)
    assert not any(policy.permits(host, 8000, found) for found in resolved)


@pytest.mark.parametrize("spelled", ["0177.0.0.1", "127.000.000.001", "0127.0.0.1"])
def test_a_dotted_quad_with_leading_zeros_is_not_a_url(spelled: str) -> None:
    # inet_aton reads 0177 as octal (127), ipaddress refuses it: httpx refuses the URL, so no
    # request is made that the guard and the resolver could read differently.
    with pytest.raises(httpx.InvalidURL):
        httpx.URL(f"http://{spelled}/")


# --- the allow-list ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "address", "allow"),
    [
        ("10.0.0.1", "10.0.0.1", "10.0.0.0/8"),
        ("169.254.169.254", "169.254.169.254", "169.254.169.254"),
        ("metadata.internal", "169.254.169.254", "metadata.internal"),
        ("x.test", "::ffff:10.1.2.3", "10.0.0.0/8"),
        ("localhost.", "127.0.0.1", "LOCALHOST"),
        ("agents.test", "8.8.8.8", ""),
    ],
)
def test_the_allow_list_lets_through_what_it_names(host: str, address: str, allow: str) -> None:
    policy = AddressPolicy.of(HttpSettings(allow=(allow,)).allow, None)
    assert policy.permits(host, 443, ip_address(address))


def test_the_base_urls_host_is_trusted_by_name_only() -> None:
    policy = AddressPolicy.of((), "http://127.0.0.1:8765/api")
    assert policy.permits("127.0.0.1", 8765, ip_address("127.0.0.1"))
    assert not policy.permits("2130706433", 8765, ip_address("127.0.0.1"))
    assert not policy.permits("127.0.0.2", 8765, ip_address("127.0.0.2"))


@pytest.mark.parametrize(
    ("base_url", "port", "trusted"),
    [
        ("http://internal.test:8765/api", 8765, True),
        ("http://internal.test:8765/api", 8766, False),  # the same host's admin port
        ("http://internal.test:8765/api", 80, False),
        ("https://Internal.Test./", 443, True),  # the default port, spelled out
        ("https://internal.test/", 80, False),
        ("http://internal.test", 80, True),
        ("http://internal.test", 443, False),
    ],
)
def test_the_base_url_is_trusted_on_its_own_port_only(
    base_url: str, port: int, trusted: bool
) -> None:
    policy = AddressPolicy.of((), base_url)
    assert policy.permits("internal.test", port, ip_address("10.0.0.1")) is trusted


def test_an_allow_listed_host_is_trusted_on_every_port() -> None:
    policy = AddressPolicy.of(("internal.test",), None)
    assert policy.permits("internal.test", 8765, ip_address("10.0.0.1"))
    assert policy.permits("internal.test", 22, ip_address("10.0.0.1"))


def test_an_allowed_network_lets_only_its_addresses_through() -> None:
    policy = AddressPolicy.of(("127.0.0.1",), None)
    assert policy.permits("2130706433", 80, ip_address("127.0.0.1"))  # the address is allowed
    assert not policy.permits("127.0.0.2", 80, ip_address("127.0.0.2"))
    assert not policy.permits("x", 80, ip_address("64:ff9b::7f00:1"))  # no NAT64 through a /32


@pytest.mark.parametrize("entry", ["http://x.example", "x.example:80", "10.0.0.0/33", "a b"])
def test_a_bad_allow_list_entry_is_named(entry: str) -> None:
    with pytest.raises(ValueError, match="OVERTURE_HTTP_ALLOWED_NETWORKS entries"):
        allow_entry(entry)
