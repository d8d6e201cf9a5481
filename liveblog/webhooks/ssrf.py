"""The SSRF guard: webhook targets may not reach private, loopback, link-local, multicast, reserved
or metadata addresses unless an operator allowed those networks (``LIVEBLOG_WEBHOOK_ALLOWED_NETWORKS``).

The check runs twice: when a subscription is saved (:func:`check_url`, for a clear 422) and on every
connection (:class:`GuardedTransport`), because DNS can change between the two (rebinding). The
transport resolves the name itself, checks every address, and connects to a checked address, so
the address that was checked is the one that is dialled. The transport never follows
redirects and ignores proxies from the environment.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Ranges refused on top of everything ``ipaddress`` does not call global: private, loopback, link-local,
# CGNAT, metadata, benchmarking, documentation, 6to4/NAT64, multicast and reserved (IPv4 and IPv6).
_BLOCKED = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
    "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
))
# IPv6 notations that embed an IPv4 address other than the mapped ``::ffff:a.b.c.d`` (which is judged
# as its IPv4 address): deprecated IPv4-compatible ``::a.b.c.d`` and SIIT's IPv4-translated
# ``::ffff:0:a.b.c.d``. Neither is a real public address; both are refused whatever they embed.
_EMBEDDING = {
    ipaddress.ip_network("::/96"): "IPv4-compatible",
    ipaddress.ip_network("::ffff:0:0:0/96"): "IPv4-translated",
}
_METADATA = {ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")}
MAX_URL_LENGTH = 2000
KEEPALIVE_SECONDS = 30.0  # an idle pooled connection is closed after this long


class Refused(Exception):
    """A target the policy does not allow (or cannot be checked). The message is safe to show."""


def _canonical(ip: IPAddress) -> IPAddress:
    """IPv4-mapped (``::ffff:a.b.c.d``) addresses are judged as the IPv4 address they reach."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _kind(ip: IPAddress) -> str:
    if ip in _METADATA:
        return "cloud metadata"
    for name in ("loopback", "unspecified"):  # ::1 and :: are in ::/96 too
        if getattr(ip, f"is_{name}"):
            return name
    for net, name in _EMBEDDING.items():
        if ip in net:
            return name
    for name in ("loopback", "link_local", "multicast", "unspecified", "private", "reserved"):
        if getattr(ip, f"is_{name}"):
            return name.replace("_", "-")
    return "non-public"


class AddressPolicy:
    """Which resolved addresses a webhook may connect to."""

    def __init__(self, allowed_networks: Iterable[str] = ()) -> None:
        self.allowed: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks)

    def refusal(self, ip: IPAddress) -> str | None:
        """The kind of address ``ip`` is (``loopback``, ``private``…) if refused, else None."""
        ip = _canonical(ip)
        if any(ip in net for net in self.allowed if net.version == ip.version):
            return None
        if (ip in _METADATA or not ip.is_global or ip.is_multicast or any(ip in net for net in _BLOCKED)
                or any(ip in net for net in _EMBEDDING if net.version == ip.version)):
            return _kind(ip)
        return None

    async def resolve_checked(self, host: str, port: int) -> list[IPAddress]:
        """Resolve ``host`` and return its addresses, refusing if any of them is not allowed.

        Refusing when *any* address is bad (not only the one we would pick) keeps a name that mixes
        public and internal records from ever being used to reach the internal one.
        """
        literal = True
        try:
            addresses = [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            literal = False
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise Refused(f"{host} does not resolve ({exc.strerror or exc})") from exc
            except UnicodeError as exc:  # the IDNA codec: an empty or over-long label (``a..b``, ``.a``)
                raise Refused(f"{host} is not a valid host name ({exc})") from exc
            addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
        if not addresses:
            raise Refused(f"{host} has no address")
        for ip in addresses:
            kind = self.refusal(ip)
            if kind:
                named = "" if literal else f"{host} resolves to "
                raise Refused(f"{named}{_canonical(ip)}, a {kind} address, is not an allowed webhook target")
        return addresses


def parse_target(url: Any) -> httpx.URL:
    """Validate the shape of a webhook URL (absolute http/https, a host, no credentials)."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise Refused(f"'url' must be an http or https URL of at most {MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
        host = parsed.host  # decodes an ``xn--`` name: IDNA errors surface here
        if host and not host.startswith("["):
            host.encode("idna")  # what resolving does: empty or over-long labels fail here
    except (httpx.InvalidURL, UnicodeError) as exc:  # idna.IDNAError is a UnicodeError
        raise Refused(f"'url' is not a valid URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not host:
        raise Refused("'url' must be an absolute http:// or https:// URL")
    if parsed.userinfo:
        raise Refused("'url' must not contain credentials (they would end up in logs)")
    return parsed


async def check_url(url: Any, policy: AddressPolicy) -> str:
    """The creation-time check: shape, then every resolved address. Returns the URL as given."""
    parsed = parse_target(url)
    await policy.resolve_checked(parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80))
    return str(url)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks, and dials the checked address (httpx has no dial hook of its own)."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await self.policy.resolve_checked(host, port)
        except Refused as exc:
            raise httpcore.ConnectError(f"refused: {exc}") from exc
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        last: Exception | None = None
        for ip in addresses:
            try:
                # TLS still verifies against ``host``: httpcore passes the origin's name to start_tls.
                return await self.inner.connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("refused: webhooks never connect to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with its connection pool rebuilt on the guarded network backend.

    Keep ``max_connections`` small: httpcore's pool re-examines every pooled connection (quadratically)
    each time a request is queued or finished, which dominated the CPU cost of a request with dozens
    of connections in one pool. ``ssl_context`` lets many transports share one (building one loads the
    CA bundle, which costs milliseconds).
    """

    def __init__(self, policy: AddressPolicy, *, max_connections: int,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        ssl_context = ssl_context or httpx.create_ssl_context()
        super().__init__(verify=ssl_context, retries=0)  # ``verify`` given a context: no new one is built
        # ``_pool`` is what AsyncHTTPTransport delegates every request to; httpx offers no public
        # way to choose the network backend, so the pool is replaced with an equivalent one.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=KEEPALIVE_SECONDS,
            network_backend=_GuardedBackend(policy),
        )
