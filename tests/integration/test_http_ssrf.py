"""The SSRF guard, end to end: each address of the corpus is refused before any connection (a
listener on the loopback address the call would reach counts zero connections, and counts one
when the address is allowed), allow-listed hosts are reached, the connection goes to the address
that was checked (no second lookup), the base URL is trusted on its own port only, and TLS to
that address still checks the host name (a certificate that fails is no outage: ``tls_error``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest
from tests.support.http_target import (
    LOOPBACK,
    Listener,
    Target,
    failure,
    listening,
    output,
    self_signed,
    serve_target,
)

from overture.handlers.http import HttpSettings
from overture.handlers.http_guard import IPAddress

pytestmark = pytest.mark.asyncio


@pytest.fixture
def target() -> Iterator[Target]:
    """The server on 127.0.0.1."""
    yield from serve_target("127.0.0.1")


@pytest.fixture
def listener() -> Iterator[Listener]:
    """Counts connections to 127.0.0.1 (and, on Linux, 0.0.0.0 and ::ffff:127.0.0.1)."""
    with listening("127.0.0.1") as listener:
        yield listener


@pytest.fixture
def listener_v6() -> Iterator[Listener]:
    """Counts connections to ::1 (skipped where IPv6 loopback is missing)."""
    try:
        with listening("::1") as listener:
            yield listener
    except OSError as error:
        pytest.skip(f"no IPv6 loopback: {error}")


# --- the corpus --------------------------------------------------------------------------------

CORPUS = [
    # (host as written in the URL, the address the guard names)
    ("127.0.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),  # decimal
    ("0x7f000001", "127.0.0.1"),  # hex
    ("0x7f.0.0.1", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),  # octal
    ("127.1", "127.0.0.1"),  # short forms
    ("127.0.1", "127.0.0.1"),
    ("localhost", "127.0.0.1"),  # a name that resolves to loopback
    ("0.0.0.0", "0.0.0.0"),
    ("0", "0.0.0.0"),
    ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),  # IPv4-mapped
    ("[::ffff:7f00:1]", "::ffff:127.0.0.1"),
    ("[64:ff9b::7f00:1]", "64:ff9b::7f00:1"),  # NAT64
    ("[64:ff9b:1::7f00:1]", "64:ff9b:1::7f00:1"),  # local-use NAT64
    ("[2002:7f00:1::]", "2002:7f00:1::"),  # 6to4
    ("169.254.169.254", "169.254.169.254"),  # cloud metadata
    ("[fd00:ec2::254]", "fd00:ec2::254"),  # AWS metadata over IPv6
    ("10.0.0.1", "10.0.0.1"),
    ("10.255.255.254", "10.255.255.254"),
    ("172.16.0.1", "172.16.0.1"),
    ("172.31.255.254", "172.31.255.254"),
    ("192.168.0.1", "192.168.0.1"),
    ("100.64.0.1", "100.64.0.1"),  # carrier-grade NAT
    ("100.127.255.254", "100.127.255.254"),
]


@pytest.mark.parametrize(("host", "address"), CORPUS)
async def test_the_corpus_is_refused_before_any_connection(
    listener: Listener, host: str, address: str
) -> None:
    error = await failure({"url": f"http://{host}:{listener.port}/x"})
    assert (error.code, error.retryable) == ("ssrf_blocked", False)
    assert error.details["host"] == host.strip("[]")
    assert ip_address(str(error.details["address"])) == ip_address(address)
    assert f"refused to connect to {host.strip('[]')!r}" in error.message
    assert "OVERTURE_HTTP_ALLOWED_NETWORKS" in error.message
    assert listener.accepted == 0


async def test_ipv6_loopback_is_refused_before_any_connection(listener_v6: Listener) -> None:
    error = await failure({"url": f"http://[::1]:{listener_v6.port}/x"})
    assert error.code == "ssrf_blocked" and error.details == {"host": "::1", "address": "::1"}
    assert listener_v6.accepted == 0


@pytest.mark.parametrize("host", ["0177.0.0.1", "127.000.000.001"])
async def test_a_dotted_quad_with_leading_zeros_is_refused_as_a_bad_url(
    listener: Listener, host: str
) -> None:
    error = await failure({"url": f"http://{host}:{listener.port}/x"})
    assert (error.code, error.retryable) == ("bad_url", False)
    assert listener.accepted == 0


@pytest.mark.parametrize(
    ("host", "allow"),
    [
        ("127.0.0.1", "127.0.0.0/8"),
        ("2130706433", "127.0.0.0/8"),
        ("0x7f000001", "127.0.0.0/8"),
        ("017700000001", "127.0.0.0/8"),
        ("127.1", "127.0.0.0/8"),
        ("localhost", "127.0.0.0/8"),
        ("[::ffff:127.0.0.1]", "127.0.0.0/8"),
        ("[::ffff:7f00:1]", "127.0.0.0/8"),
        ("0.0.0.0", "0.0.0.0/32"),
        ("0", "0.0.0.0/32"),
    ],
)
async def test_the_same_spellings_reach_the_listener_once_allowed(
    listener: Listener, host: str, allow: str
) -> None:
    # The control: these addresses do lead to the listener, which sees the connection when the
    # guard lets it through; so its count of zero above means no connection was made.
    out = await output({"url": f"http://{host}:{listener.port}/x"}, HttpSettings(allow=(allow,)))
    assert out["body"] == {"reached": True}
    assert listener.accepted == 1


# --- allowing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allow"),
    [("127.0.0.1", "127.0.0.1"), ("127.0.0.1", "127.0.0.0/8"), ("localhost", "localhost")],
)
async def test_an_allow_listed_loopback_host_or_network_is_reached(
    target: Target, host: str, allow: str
) -> None:
    out = await output({"url": f"http://{host}:{target.port}/json"}, HttpSettings(allow=(allow,)))
    assert out["body"] == {"hello": "world"}


async def test_an_allow_listed_ipv6_loopback_is_reached(listener_v6: Listener) -> None:
    out = await output({"url": f"http://{listener_v6.netloc}/x"}, HttpSettings(allow=("::1",)))
    assert out["body"] == {"reached": True}


# --- the base URL ------------------------------------------------------------------------------


async def test_the_base_urls_host_is_trusted_on_its_own_port_only(
    target: Target, listener: Listener
) -> None:
    # The base URL is 127.0.0.1 on the target's port: that needs no allowing...
    settings = HttpSettings(base_url=target.url)
    assert (await output({"call": "/json"}, settings))["body"] == {"hello": "world"}
    assert (await output({"url": f"{target.url}/json"}, settings))["body"] == {"hello": "world"}
    # ...but another port of the same host (an admin port, say) is guarded as any other URL.
    error = await failure({"url": f"http://127.0.0.1:{listener.port}/x"}, settings)
    assert (error.code, error.retryable) == ("ssrf_blocked", False)
    assert listener.accepted == 0


# --- one lookup, pinned connections ------------------------------------------------------------


class ScriptedDns:
    """A resolver that answers from a script, one answer per lookup, and counts lookups."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = [[ip_address(a) for a in answer] for answer in answers]
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append(host)
        return self.answers[min(len(self.lookups), len(self.answers)) - 1]


async def test_the_connection_goes_to_the_checked_address_without_a_second_lookup(
    target: Target,
) -> None:
    # A rebinding DNS: the first answer passes the guard, any later one would not (and nothing
    # listens on 127.0.0.2). A second lookup, ours or the system's (which does not know
    # rebind.test at all), makes this fail.
    dns = ScriptedDns(["127.0.0.1"], ["127.0.0.2"])
    out = await output({"url": f"http://rebind.test:{target.port}/headers"}, LOOPBACK, resolve=dns)
    assert dns.lookups == ["rebind.test"]
    assert out["body"]["host"] == f"rebind.test:{target.port}"


async def test_of_several_addresses_only_the_allowed_ones_are_used(target: Target) -> None:
    dns = ScriptedDns(["10.0.0.1", "169.254.169.254", "127.0.0.1"])
    out = await output({"url": f"http://mixed.test:{target.port}/json"}, LOOPBACK, resolve=dns)
    assert out["status"] == 200


async def test_a_name_with_only_refused_addresses_is_blocked_naming_the_first(
    listener: Listener,
) -> None:
    dns = ScriptedDns(["10.0.0.1", "127.0.0.1"])
    error = await failure({"url": f"http://rebind.test:{listener.port}/x"}, resolve=dns)
    assert error.code == "ssrf_blocked"
    assert error.details == {"host": "rebind.test", "address": "10.0.0.1"}
    assert listener.accepted == 0


async def test_a_name_that_does_not_resolve_is_a_retryable_network_error() -> None:
    async def no_such_host(host: str, port: int) -> list[IPAddress]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    error = await failure({"url": "http://nowhere.test/"}, resolve=no_such_host)
    assert (error.code, error.retryable) == ("http_network_error", True)
    assert "cannot resolve 'nowhere.test'" in error.message


# --- TLS to a pinned address -------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for pinned.test, and its key."""
    return self_signed(tmp_path, "pinned.test")


@pytest.fixture
def tls_target(certificate: tuple[Path, Path]) -> Iterator[Target]:
    """A TLS server on 127.0.0.1 with the self-signed certificate (which nothing trusts yet)."""
    cert, key = certificate
    yield from serve_target("127.0.0.1", ssl_certfile=str(cert), ssl_keyfile=str(key))


async def test_tls_to_a_pinned_address_checks_the_certificate_for_the_host_name(
    tls_target: Target, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))  # trusted: only the name is wrong
    dns = ScriptedDns(["127.0.0.1"])
    good = await output(
        {"url": f"https://pinned.test:{tls_target.port}/json"}, LOOPBACK, resolve=dns
    )
    assert good["body"] == {"hello": "world"}

    wrong = await failure(
        {"url": f"https://other.test:{tls_target.port}/json"}, LOOPBACK, resolve=dns
    )
    assert (wrong.code, wrong.retryable) == ("tls_error", False)
    assert "CERTIFICATE_VERIFY_FAILED" in wrong.message
    assert "other.test" in wrong.message


async def test_a_certificate_no_authority_vouches_for_fails_at_once_as_a_tls_error(
    tls_target: Target, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Retrying would meet the same certificate: it is the caller's configuration, not an outage
    # (so it does not count towards a circuit breaker either).
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    dns = ScriptedDns(["127.0.0.1"])
    error = await failure(
        {"url": f"https://pinned.test:{tls_target.port}/json"}, LOOPBACK, resolve=dns
    )
    assert (error.code, error.retryable) == ("tls_error", False)
    assert "certificate verification failed" in error.message
    assert "SSL_CERT_FILE" in error.message
    assert tls_target.received == []
